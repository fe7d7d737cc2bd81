"""Encode frames into a video by streaming raw RGB(A) into ffmpeg's stdin.

Streaming (instead of pointing ffmpeg at ``%06d.png``) works for every store (an S3 bucket has no local paths),
lets the frames come from any iterator (upscaler, interpolator), skips writing and re-reading a PNG per frame, and
the output is written to a temp name and renamed, so a crash never leaves a half-written video under the final name.
``benchmarks/bench_encode.py`` measures the difference against the PNG round trip.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from framefarm.errors import RenderError
from framefarm.storage.atomic import discard, publish
from framefarm.video.codecs import CODECS, REC709_TAGS, Codec, get_codec
from framefarm.video.ffmpeg import ffmpeg_error, ffmpeg_exe, reap, require_encoders

# H.264 for players everywhere: yuv420p (4:2:0) is the only chroma layout browsers, phones and most hardware
# decoders play; libx264 would otherwise keep 4:4:4 from RGB input. +faststart puts the index first for streaming.
H264_ARGS = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]

# One palette for the whole clip, ordered dithering (stable between frames: error diffusion makes still areas crawl),
# and only the changed rectangle stored per frame. stats_mode=full, not diff: with diff, ffmpeg 9.0.2 left the last
# frame's colours out of the palette (a yellow frame came out green).
GIF_FILTER = ("split[a][b];[a]palettegen=stats_mode=full[p];"
              "[b][p]paletteuse=dither=bayer:bayer_scale=4:diff_mode=rectangle")


# Presets whose container no other preset uses: the suffix already says which it is.
_OWN_CONTAINER = frozenset({"h264", "webm", "gif", "png"})


def format_fps(fps: float) -> str:
    """``24.0`` → ``"24"``, ``29.97`` → ``"29.97"``: for names and for ffmpeg's ``-framerate``."""
    return f"{fps:.3f}".rstrip("0").rstrip(".")


def format_bpm(bpm: float) -> str:
    """``128.0`` → ``"128"``, ``87.5`` → ``"87.5"``."""
    return f"{bpm:.2f}".rstrip("0").rstrip(".")


def output_name(
    job: str,
    *,
    width: int,
    height: int,
    fps: float,
    frames: int,
    suffix: str = ".mp4",
    bpm: float | None = None,
    beats: int | None = None,
    codec: str | None = None,
) -> str:
    """Output file name carrying what a VJ needs to know at a glance.

    ``tunnel_512x512_24fps_96f.mp4``; a loop with its tempo: ``loop_1920x1080_25fps_375f_128bpm_32beats_hapq.mov``.
    The preset is named when its container is shared (H.265 next to H.264 in ``.mp4``; ProRes, HAP, DNxHR in
    ``.mov``), so two deliverables of one job never share a name.
    """
    name = f"{job}_{width}x{height}_{format_fps(fps)}fps_{frames}f"
    if bpm is not None:
        name += f"_{format_bpm(bpm)}bpm"
    if beats is not None:
        name += f"_{beats}beats"
    if codec is not None and codec not in _OWN_CONTAINER:
        name += f"_{codec}"
    return name + suffix


def partial_path(out_path: Path) -> Path:
    """Where an output is written before it is renamed into place (``clip.partial.mp4``, ``frames.partial``)."""
    return out_path.with_name(out_path.stem + ".partial" + out_path.suffix)


def video_args(codec: Codec, *, alpha: bool, crf: int, preset: str) -> list[str]:
    """ffmpeg output arguments for the video stream of ``codec`` (filters, pixel format, encoder, tags)."""
    pix_fmt = codec.alpha_pix_fmt if alpha and codec.alpha_pix_fmt else codec.pix_fmt
    args: list[str] = []
    if codec.name == "gif":
        args += ["-vf", GIF_FILTER]
    elif codec.yuv:
        # Explicit Rec.709 matrix (swscale defaults to BT.601) and tags, so players decode the colours we meant.
        args += ["-vf", f"scale=out_color_matrix=bt709:out_range=tv,format={pix_fmt}", *REC709_TAGS]
    else:
        args += ["-pix_fmt", pix_fmt]
    args += list(codec.args)
    if codec.uses_crf:
        args += ["-crf", str(crf)]
    if codec.uses_preset:
        args += ["-preset", preset]
    return args + list(codec.extra_output_args)


def write_video_frames(
    frames: Iterable[np.ndarray],
    out_path: str | Path,
    *,
    width: int,
    height: int,
    fps: float,
    crf: int = 18,
    preset: str = "veryfast",
    codec: str | Codec = "h264",
    alpha: bool = False,
    publish_output: bool = True,
) -> Path:
    """Encode RGB (or RGBA) uint8 frames of ``width``×``height`` with an encode preset (H.264 MP4 by default).

    Args:
        frames: ``(height, width, 3)`` uint8 arrays (``(height, width, 4)`` when ``alpha``), in order.
        out_path: final file (or folder, for the ``png`` sequence); written as ``<name>.partial<suffix>`` first and
            renamed when ffmpeg succeeds.
        fps: frame rate written into the stream.
        crf: constant rate factor for H.264/H.265/VP9 (0 lossless … 51 worst; 18 ≈ visually lossless).
        preset: x264/x265 speed/size trade-off; ``veryfast`` is ~4× faster than ``medium`` on 2 cores.
        codec: an encode preset name from :data:`~framefarm.video.codecs.CODECS` or a :class:`Codec`.
        alpha: the frames are RGBA; the alpha channel is kept where the preset supports it.
        publish_output: rename the partial output to ``out_path`` (``False``: leave it at
            :func:`partial_path` for the caller to check, mux and publish).

    Returns:
        The path of the finished video (or of the partial one when ``publish_output`` is false).

    Raises:
        RenderError: ffmpeg failed (the message has the command and its stderr), a frame had the wrong shape, or the
            size breaks the preset's rules (see :func:`~framefarm.video.codecs.fit_size` to fit frames first).
    """
    # ----- Prepare
    codec = codec if isinstance(codec, Codec) else get_codec(codec)
    require_encoders(codec.encoder)
    mult_w, mult_h = codec.multiple
    if width % mult_w or height % mult_h:
        raise RenderError(f"{codec.label} needs sides that are multiples of {mult_w}x{mult_h} ({codec.size_note}), "
                          f"got {width}x{height}")
    channels = 4 if alpha else 3
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(out_path)
    discard(partial)
    if codec.is_sequence:
        partial.mkdir(parents=True)
        target = ["-start_number", "0", "-f", "image2", str(partial / "%06d.png")]
    else:
        target = [str(partial)]
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgba" if alpha else "rgb24", "-s", f"{width}x{height}",
        "-framerate", format_fps(fps), "-i", "-",
        *video_args(codec, alpha=alpha, crf=crf, preset=preset), "-r", format_fps(fps), *target,
    ]
    count = 0
    # stderr goes to a temp file, not a pipe: a pipe nobody reads fills up and deadlocks ffmpeg on long encodes.
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=stderr)
            # ----- Write frames (enter try directly after starting the process; the finally clause owns its lifetime)
            try:
                for frame in frames:
                    if frame.shape != (height, width, channels) or frame.dtype != np.uint8:
                        raise RenderError(f"frame {count} is {frame.dtype} {frame.shape}, expected uint8 "
                                          f"({height}, {width}, {channels})")
                    process.stdin.write(np.ascontiguousarray(frame).tobytes())
                    count += 1
                process.stdin.close()
                code = process.wait()
            except BrokenPipeError:
                code = process.wait()
            finally:
                reap(process)
        except BaseException:
            discard(partial)  # ffmpeg is dead by now, so nothing re-creates the partial output
            raise
        if code != 0:
            stderr.seek(0)
            error = ffmpeg_error(f"ffmpeg failed to encode {out_path.name} (exit {code})", command, stderr.read())
            discard(partial)
            raise error
    if count == 0:
        discard(partial)
        raise RenderError(f"no frames to encode into {out_path}")
    if not publish_output:
        return partial
    return publish(partial, out_path)


__all__ = ["CODECS", "write_video_frames", "format_fps", "output_name"]
