"""Checking a finished output against its plan: decode it and compare frame count, size, fps, duration, format.

Runs on the partial file before it is renamed into place, so a video that would not play (or has a frame too few)
is never published under its final name. Frames are counted by decoding every one of them (``-f null``: no pixel
conversion, no pipe), not read from the container's header, which can disagree with what a player shows.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2

from framefarm.errors import RenderError
from framefarm.video.codecs import Codec
from framefarm.video.decode import probe_video
from framefarm.video.ffmpeg import ffmpeg_error, ffmpeg_exe
from framefarm.video.frames import list_frame_files
from framefarm.video.gif import gif_duration

_FRAME = re.compile(r"^frame=(\d+)$", re.MULTILINE)


def decoded_frame_count(path: Path) -> int:
    """Frames ffmpeg decodes from the first video stream of ``path``."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-i", str(path),
               "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "null", "-progress", "pipe:1", "-"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    counts = _FRAME.findall(result.stdout)
    if result.returncode != 0 or not counts:
        raise ffmpeg_error(f"ffmpeg could not decode {path} (exit {result.returncode})", command, result.stderr)
    return int(counts[-1])


@dataclass(frozen=True)
class Verification:
    """What the output holds, next to what was planned; ``problems`` is empty when they agree."""

    path: Path
    frames: int
    width: int
    height: int
    fps: float
    duration: float
    pix_fmt: str
    has_audio: bool
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_output(path: str | Path, *, codec: Codec, frames: int, width: int, height: int, fps: float,
                  alpha: bool = False, audio: bool = False) -> Verification:
    """Decode ``path`` and compare it with the plan (see the module docstring); never raises for a mismatch."""
    path = Path(path)
    expected_pix = codec.decoded_pix_fmt[1] if alpha and codec.decoded_pix_fmt[1] else codec.decoded_pix_fmt[0]
    if codec.is_sequence:
        files = list_frame_files(path, field="output")
        first = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
        if first is None:
            raise RenderError(f"{files[0]} is not a readable image")
        channels = first.shape[2] if first.ndim == 3 else 1
        found = Verification(path=path, frames=len(files), width=first.shape[1], height=first.shape[0], fps=fps,
                             duration=len(files) / fps, pix_fmt={4: "rgba", 3: "rgb24"}.get(channels, "gray"),
                             has_audio=False, problems=())
    else:
        info = probe_video(path, count=False)
        count = decoded_frame_count(path)
        found_fps, duration = info.fps, info.duration
        if codec.name == "gif":  # whole-centisecond delays that vary frame to frame (see framefarm/video/gif.py)
            duration = gif_duration(path)
            found_fps = count / duration if duration > 0 else 0.0
        found = Verification(path=path, frames=count, width=info.width, height=info.height, fps=found_fps,
                             duration=duration, pix_fmt=info.pix_fmt, has_audio=info.has_audio, problems=())
    plan_duration = frames / fps
    problems = []
    if found.frames != frames:
        problems.append(f"{found.frames} frames decoded, {frames} planned")
    if (found.width, found.height) != (width, height):
        problems.append(f"size {found.width}x{found.height}, planned {width}x{height}")
    if codec.name == "gif":
        # ffmpeg rounds each frame's timestamp to a centisecond, so the total stays within one frame of the plan.
        # A rate no GIF can hold (over 100 fps: a delay is at least 1 cs) would play longer; finish refuses it first.
        if abs(found.duration - plan_duration) > 1.0 / fps:
            problems.append(f"plays {found.duration:.2f} s (the sum of its frame delays), planned "
                            f"{plan_duration:.2f} s")
    elif not codec.is_sequence:
        if not math.isclose(found.fps, fps, rel_tol=2e-3):
            problems.append(f"{found.fps:g} fps, planned {fps:g}")
        # The header rounds the duration to 10 ms; AAC pads its last packet: allow one frame plus that.
        if abs(found.duration - plan_duration) > 1.0 / fps + 0.011:
            problems.append(f"duration {found.duration:.3f} s, planned {plan_duration:.3f} s")
    if found.pix_fmt != expected_pix:
        problems.append(f"pixel format {found.pix_fmt}, expected {expected_pix}")
    if audio and not found.has_audio:
        problems.append("no audio stream, one was muxed in")
    return Verification(**{**found.__dict__, "problems": tuple(problems)})


def check_output(path: str | Path, **plan) -> Verification:
    """:func:`verify_output`, raising a :class:`RenderError` listing every mismatch."""
    result = verify_output(path, **plan)
    if not result.ok:
        raise RenderError(f"{Path(path).name} does not match its plan: " + "; ".join(result.problems))
    return result
