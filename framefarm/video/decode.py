"""Decode and probe videos with the ffmpeg binary alone (imageio-ffmpeg ships no ffprobe)."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framefarm.errors import InputError, RenderError
from framefarm.video.ffmpeg import ffmpeg_exe

_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: .*?, (\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"([\d.]+) (?:fps|tbr)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds: decoded frame count, size, frame rate and whether it has an audio stream."""

    frames: int
    width: int
    height: int
    fps: float
    duration: float
    has_audio: bool


def _header(path: Path) -> str:
    # `ffmpeg -i file` with no output prints the stream summary on stderr and exits 1: that's the probe.
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                            capture_output=True, text=True, check=False)
    return result.stderr


def probe_video(path: str | Path, *, count: bool = True) -> VideoInfo:
    """Size, fps and (by decoding every frame, so it is exact) the frame count of a video file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("video", str(path), "no such file")
    header = _header(path)
    stream = _STREAM.search(header)
    if stream is None:
        raise InputError("video", str(path), "has no video stream ffmpeg can read", header.strip()[-500:])
    width, height = int(stream.group(1)), int(stream.group(2))
    video_line = next(line for line in header.splitlines() if "Video:" in line)
    fps_match = _FPS.search(video_line)
    duration_match = _DURATION.search(header)
    duration = 0.0
    if duration_match:
        h, m, s = duration_match.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    frames = sum(1 for _ in decode_frames(path, width=width, height=height)) if count else -1
    return VideoInfo(frames=frames, width=width, height=height, fps=float(fps_match.group(1)) if fps_match else 0.0,
                     duration=duration, has_audio="Audio:" in header)


def decode_frames(
    path: str | Path, *, width: int, height: int, fps: float | None = None, start_frame: int = 0
) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames of ``width``×``height`` (scaled to cover and centre-cropped), resampled to ``fps``.

    The ffmpeg process is killed if the caller stops iterating early.
    """
    filters = []
    if fps is not None:
        filters.append(f"fps={fps}")
    filters.append(f"scale={width}:{height}:force_original_aspect_ratio=increase:flags=lanczos")
    filters.append(f"crop={width}:{height}")
    if start_frame:
        filters.append(f"select=gte(n\\,{start_frame})")
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
               "-map", "0:v:0", "-vf", ",".join(filters), "-fps_mode", "passthrough",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    size = width * height * 3
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
        try:
            while True:
                data = process.stdout.read(size)
                if len(data) < size:
                    break
                yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
            code = process.wait()
            if code != 0:
                stderr.seek(0)
                raise RenderError(f"ffmpeg failed to decode {path} (exit {code}).\ncommand: {' '.join(command)}\n"
                                  f"=== stderr ===\n{stderr.read().decode(errors='replace')[-3000:]}")
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()
