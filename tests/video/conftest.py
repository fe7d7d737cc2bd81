"""Synthetic media for the finishing-stage tests: frames drawn with numpy, sounds from ffmpeg's lavfi sources."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from framefarm.video.ffmpeg import ffmpeg_exe


def pattern_frames(count: int, width: int = 64, height: int = 48, *, alpha: bool = False) -> list[np.ndarray]:
    """Smooth gradients plus a moving bright block: easy for every codec, different from frame to frame."""
    frames = []
    for i in range(count):
        frame = np.zeros((height, width, 4 if alpha else 3), np.uint8)
        frame[..., 0] = (np.arange(width)[None, :] * 255 // max(1, width - 1) + i * 8) % 256
        frame[..., 1] = (np.arange(height)[:, None] * 255 // max(1, height - 1))
        frame[..., 2] = 60
        x = (i * 6) % max(1, width - 16)
        frame[8:24, x:x + 16, :3] = 230
        if alpha:
            frame[..., 3] = 128
            frame[:, : width // 4, 3] = 255
        frames.append(frame)
    return frames


def write_tone(path: Path, expression: str, seconds: float, rate: int = 44100) -> Path:
    """A sound file from an ``aevalsrc`` expression (e.g. a click at 0.5 s)."""
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi",
                    "-i", f"aevalsrc='{expression}':s={rate}:d={seconds}", str(path)], check=True)
    return path


def click_file(path: Path, at: float, seconds: float = 4.0) -> Path:
    """Silence with one 5 ms click at ``at`` seconds."""
    return write_tone(path, f"if(between(t,{at},{at}+0.005),0.9,0)", seconds)


@pytest.fixture()
def frames_dir(tmp_path: Path):
    """Write frames into a folder as ``f0.png`` … ``f<N>.png`` (no zero padding: natural order matters)."""
    import cv2

    def write(frames: list[np.ndarray], name: str = "frames") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for i, frame in enumerate(frames):
            code = cv2.COLOR_RGBA2BGRA if frame.shape[2] == 4 else cv2.COLOR_RGB2BGR
            cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(frame, code))
        return folder

    return write
