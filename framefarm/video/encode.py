"""Encode frames into a video by streaming raw RGB into ffmpeg's stdin.

Streaming (instead of pointing ffmpeg at ``%06d.png``) works for every store (an S3 bucket has no local paths),
lets the frames come from any iterator, and the output is written to a temp name and renamed, so a crash never
leaves a half-written video under the final name.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from framefarm.errors import RenderError
from framefarm.video.ffmpeg import ffmpeg_exe, require_encoders

# H.264 for players everywhere: yuv420p (4:2:0) is the only chroma layout browsers, phones and most hardware
# decoders play; libx264 would otherwise keep 4:4:4 from RGB input. +faststart puts the index first for streaming.
H264_ARGS = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]


def format_fps(fps: float) -> str:
    """``24.0`` → ``"24"``, ``29.97`` → ``"29.97"``: for names and for ffmpeg's ``-framerate``."""
    return f"{fps:.3f}".rstrip("0").rstrip(".")


def output_name(job: str, *, width: int, height: int, fps: float, frames: int, suffix: str = ".mp4") -> str:
    """Output file name carrying what a VJ needs to know at a glance: ``tunnel_512x512_24fps_96f.mp4``."""
    return f"{job}_{width}x{height}_{format_fps(fps)}fps_{frames}f{suffix}"


def encode_frames(
    frames: Iterable[np.ndarray],
    out_path: str | Path,
    *,
    width: int,
    height: int,
    fps: float,
    crf: int = 18,
    preset: str = "veryfast",
) -> Path:
    """Encode RGB uint8 frames of ``width``×``height`` to an H.264 MP4 at ``out_path``.

    Args:
        frames: ``(height, width, 3)`` uint8 arrays, in order.
        out_path: final file; written as ``<name>.partial.mp4`` first and renamed when ffmpeg succeeds.
        fps: frame rate written into the stream.
        crf: x264 constant rate factor (0 lossless … 51 worst; 18 ≈ visually lossless).
        preset: x264 speed/size trade-off; ``veryfast`` is ~4× faster than ``medium`` on 2 cores.

    Returns:
        The path of the finished video.

    Raises:
        RenderError: ffmpeg failed (the message has the command and its stderr), or a frame had the wrong shape.
    """
    # ----- Prepare
    require_encoders("libx264")
    if width % 2 or height % 2:
        raise RenderError(f"H.264 (yuv420p) needs even sides, got {width}x{height}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.stem + ".partial" + out_path.suffix)
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", format_fps(fps), "-i", "-",
        *H264_ARGS, "-crf", str(crf), "-preset", preset, "-r", format_fps(fps), str(partial),
    ]
    # stderr goes to a temp file, not a pipe: a pipe nobody reads fills up and deadlocks ffmpeg on long encodes.
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=stderr)
        # ----- Write frames (enter try directly after starting the process; the finally clause owns its lifetime)
        try:
            count = 0
            for frame in frames:
                if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                    raise RenderError(f"frame {count} is {frame.dtype} {frame.shape}, expected uint8 "
                                      f"({height}, {width}, 3)")
                process.stdin.write(np.ascontiguousarray(frame).tobytes())
                count += 1
            process.stdin.close()
            code = process.wait()
        except BrokenPipeError:
            code = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if code != 0:
            stderr.seek(0)
            message = stderr.read().decode(errors="replace")[-3000:]
            if partial.exists():
                partial.unlink()
            raise RenderError(f"ffmpeg failed to encode {out_path.name} (exit {code}).\n"
                              f"command: {' '.join(command)}\n=== stderr ===\n{message}")
    if count == 0:
        partial.unlink(missing_ok=True)
        raise RenderError(f"no frames to encode into {out_path}")
    os.replace(partial, out_path)
    return out_path
