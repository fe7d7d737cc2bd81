"""Benchmark: streaming raw frames into ffmpeg vs the PNG round trip, for 600 1080p frames (one run of each).

* **stream** — what framefarm does: every frame goes as raw RGB through ffmpeg's stdin
  (``framefarm.video.write_video_frames``).
* **png round trip** — the usual alternative: write every frame as a PNG (OpenCV, compression level 1, as framefarm
  writes its frames), then point ffmpeg at ``%06d.png``. Its time is the PNG writing plus ffmpeg's run, which
  decodes every PNG again.

Both encode with identical settings (``--codec``, H.264 veryfast CRF 18 by default, Rec.709) from the same frames: a
textured 1080p image (smooth noise plus fine grain, like a diffusion render) panning a few pixels a frame, with fine
detail that changes every frame, drawn on the fly (its cost, measured separately, is in both totals). The two
outputs are checked to hold the same number of frames. Prints the ratio (png round trip time / stream time) and
writes JSON to ``--out``.

Usage:
    python benchmarks/bench_encode.py [--frames 600] [--size 1920x1080] [--codec h264] [--preset veryfast]
                                      [--out benchmarks/results/encode.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import framefarm  # noqa: F401
except ImportError:  # run from a checkout without installing: python benchmarks/bench_encode.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2

from framefarm.images import encode_png
from framefarm.video.codecs import get_codec
from framefarm.video.encode import format_fps, video_args, write_video_frames
from framefarm.video.ffmpeg import ffmpeg_exe, run_ffmpeg
from framefarm.video.verify import decoded_frame_count


def make_base(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A textured frame a little larger than the output (smooth colour noise + grain), to pan across."""
    rng = np.random.default_rng(seed)
    pad = 64
    coarse = rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (width + pad, height + pad), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    grain = rng.integers(-14, 15, smooth.shape, dtype=np.int16)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def frames(count: int, width: int, height: int):
    """Frame i: the base image panned by (i mod 32, i·2 mod 32) pixels, plus fine detail that changes every frame
    (diffusion renders flicker in their fine detail; a purely panning image would flatter the video encoder)."""
    base = make_base(width, height).astype(np.int16)
    rng = np.random.default_rng(1)
    flicker = [rng.integers(-4, 5, (height, width, 3), dtype=np.int16) for _ in range(7)]
    for i in range(count):
        dx, dy = i % 32, (2 * i) % 32
        frame = base[dy:dy + height, dx:dx + width] + flicker[i % len(flicker)]
        yield np.clip(frame, 0, 255).astype(np.uint8)


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--codec", default="h264")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "encode.json")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    codec = get_codec(args.codec)

    # ----- Frame drawing alone (part of both totals below)
    _, draw_s = timed(lambda: sum(1 for _ in frames(args.frames, width, height)))

    with tempfile.TemporaryDirectory(prefix="framefarm-bench-") as folder:
        folder = Path(folder)
        # ----- 1. Stream: raw RGB through stdin
        streamed, stream_s = timed(lambda: write_video_frames(
            frames(args.frames, width, height), folder / f"stream{codec.suffix}", width=width, height=height,
            fps=args.fps, crf=args.crf, preset=args.preset, codec=codec))

        # ----- 2. PNG round trip: write PNGs, then ffmpeg reads them
        png_dir = folder / "png"
        png_dir.mkdir()

        def write_pngs() -> int:
            total = 0
            for i, frame in enumerate(frames(args.frames, width, height)):
                data = encode_png(frame)
                (png_dir / f"{i:06d}.png").write_bytes(data)
                total += len(data)
            return total

        png_bytes, png_write_s = timed(write_pngs)
        roundtrip = folder / f"roundtrip{codec.suffix}"
        _, png_ffmpeg_s = timed(lambda: run_ffmpeg(
            ["-y", "-loglevel", "error", "-framerate", format_fps(args.fps), "-i", str(png_dir / "%06d.png"),
             *video_args(codec, alpha=False, crf=args.crf, preset=args.preset), "-r", format_fps(args.fps),
             str(roundtrip)], what="encode the PNG sequence"))

        counts = decoded_frame_count(streamed), decoded_frame_count(roundtrip)
        if counts != (args.frames, args.frames):
            raise SystemExit(f"frame counts differ from {args.frames}: stream {counts[0]}, png {counts[1]}")
        sizes = streamed.stat().st_size, roundtrip.stat().st_size

    png_total_s = png_write_s + png_ffmpeg_s
    result = {
        "frames": args.frames, "width": width, "height": height, "fps": args.fps, "codec": codec.name,
        "preset": args.preset, "crf": args.crf,
        "draw_frames_s": round(draw_s, 2),
        "stream_s": round(stream_s, 2),
        "png_write_s": round(png_write_s, 2),
        "png_ffmpeg_s": round(png_ffmpeg_s, 2),
        "png_total_s": round(png_total_s, 2),
        "ratio_png_over_stream": round(png_total_s / stream_s, 2),
        "stream_fps": round(args.frames / stream_s, 1),
        "png_roundtrip_fps": round(args.frames / png_total_s, 1),
        "png_mb": round(png_bytes / 1e6, 1),
        "video_mb": {"stream": round(sizes[0] / 1e6, 2), "png_roundtrip": round(sizes[1] / 1e6, 2)},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "ffmpeg": subprocess.run([ffmpeg_exe(), "-version"], capture_output=True,
                                             text=True).stdout.split("\n")[0]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.frames} frames {width}x{height} {codec.name} ({args.preset}, crf {args.crf}), "
          f"{os.cpu_count()} CPUs; drawing the frames alone {draw_s:.1f} s (in both totals)")
    print(f"  stream (raw pipe):  {stream_s:7.1f} s  ({args.frames / stream_s:.1f} frames/s)")
    print(f"  png round trip:     {png_total_s:7.1f} s  (write {png_write_s:.1f} s, {png_bytes / 1e6:.0f} MB; "
          f"ffmpeg {png_ffmpeg_s:.1f} s)")
    print(f"  ratio png / stream: {png_total_s / stream_s:.2f}x")
    print(f"  -> {args.out}")


if __name__ == "__main__":
    main()
