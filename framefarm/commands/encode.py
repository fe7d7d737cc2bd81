"""``framefarm encode``: assemble any folder of frames into a finished video (the job flow uses the same code).

Contract: the written path is the last line of stdout; notes and errors go to stderr; exit code 0 on success,
2 on invalid input, 1 on a failure during work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def _job_fps(frames_dir: Path) -> float | None:
    # A framefarm render folder (<job>/frames next to <job>/job.json) knows its own frame rate.
    job_json = frames_dir.parent / "job.json"
    try:
        return float(json.loads(job_json.read_text())["fps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _default_stem(frames_dir: Path) -> str:
    # ".../my-job/frames" → "my-job"; ".../shot_010" → "shot_010".
    folder = frames_dir.resolve()
    return folder.parent.name if folder.name == "frames" and folder.parent.name else folder.name


def encode(
    frames_dir: Annotated[Path, typer.Argument(help="Folder of frames (PNG, JPEG, TIFF …), taken in natural name "
                                                    "order.", show_default=False)],
    codec: Annotated[str, typer.Option("--codec", "-c", help="h264, h265, prores (422 HQ), prores4444, hap, hapq, "
                                                             "hapalpha, dnxhr, webm, gif or png (a folder).")] = "h264",
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frame rate of the frames (default: the render's "
                                                               "job.json, if there is one).")] = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Output file; without a suffix the codec's "
                                                "container is added. An existing folder gets a descriptive name "
                                                "inside it. Default: beside FRAMES_DIR.")] = None,
    crf: Annotated[Optional[int], typer.Option("--crf", help="Quality for h264/h265/webm (lower is better; "
                                                             "defaults 18/20/30).")] = None,
    encoder_preset: Annotated[str, typer.Option("--preset", help="x264/x265 speed preset.")] = "veryfast",
    width: Annotated[Optional[int], typer.Option("--width", help="Output width (with --height): frames are "
                                                                 "scaled to cover and centre-cropped.")] = None,
    height: Annotated[Optional[int], typer.Option("--height", help="Output height.")] = None,
    audio: Annotated[Optional[Path], typer.Option("--audio", help="Sound file to mux in (trimmed or padded to "
                                                                  "the frames).")] = None,
    audio_offset: Annotated[float, typer.Option("--audio-offset", help="Seconds into the video where the sound "
                                                "starts; negative skips into the file.")] = 0.0,
    upscale: Annotated[Optional[str], typer.Option("--upscale", help="2 | lanczos:2 | model.pth (ESRGAN family, "
                                                                     "needs spandrel).")] = None,
    interpolate: Annotated[Optional[int], typer.Option("--interpolate", help="Frames per input frame (2 doubles "
                                                       "the frame rate, same duration).")] = None,
    interpolate_method: Annotated[str, typer.Option("--interpolate-method", help="flow (optical flow, default), "
                                                    "minterpolate (ffmpeg) or rife.")] = "flow",
    rife_model: Annotated[Optional[Path], typer.Option("--rife-model", help="TorchScript export of RIFE, for "
                                                       "--interpolate-method rife.")] = None,
    loop: Annotated[Optional[str], typer.Option("--loop", help="wrap (the frames already loop) | crossfade[:N] | "
                                                "match[:N]. Loops interpolate the last→first pair too.")] = None,
    bpm: Annotated[Optional[float], typer.Option("--bpm", help="Tempo: the output must be a whole number of "
                                                              "beats.")] = None,
    beats: Annotated[Optional[int], typer.Option("--beats", help="Loop length in beats (with --bpm).")] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Decode the output and check frames, size, "
                                                                      "fps and duration.")] = True,
) -> None:
    """Encode a folder of frames: upscale, interpolate, close loops, mux audio; prints the output path last."""
    from framefarm.cli_output import err, fail
    from framefarm.errors import FramefarmError, InputError
    from framefarm.preflight import check_writable_folder
    from framefarm.video.codecs import get_codec
    from framefarm.video.finish import finish

    try:
        codec_preset = get_codec(codec, field="--codec")
        if not frames_dir.is_dir():
            raise InputError("FRAMES_DIR", str(frames_dir), "is not a folder",
                             "Give a folder of numbered images (PNG, JPEG …)")
        rate = fps if fps is not None else _job_fps(frames_dir)
        if rate is None:
            raise InputError("--fps", problem="is needed: a folder of frames has no frame rate",
                             fix="Example: --fps 25")
        # No -o: beside the frames folder; -o an existing folder: inside it; both with a descriptive name.
        name = _default_stem(frames_dir)
        if out is None:
            target: Path = frames_dir.resolve().parent
        elif out.is_dir():
            target = out
        else:
            target, name = out, None
        # Found now, with a readable message, rather than as ffmpeg's error (or a traceback) after the decode.
        check_writable_folder("--out", str(out if out is not None else target),
                              target if out is None or out.is_dir() else Path(target).parent)
        result = finish(frames_dir, target, fps=rate, codec=codec_preset, crf=crf, encoder_preset=encoder_preset,
                        width=width, height=height, audio=audio, audio_offset=audio_offset, upscale=upscale,
                        interpolate=interpolate, interpolate_method=interpolate_method, interpolate_model=rife_model,
                        loop=loop, bpm=bpm, beats=beats, name=name, verify=verify)
    except FramefarmError as exc:
        fail(exc)
    for note in result.notes:
        err.print(f"note: {note}", highlight=False, markup=False)
    tempo = f", {result.bpm:g} BPM, {result.beats} beats" if result.bpm is not None else ""
    err.print(f"{result.frames} frames, {result.width}x{result.height} @ {result.fps:g} fps "
              f"({result.duration:.2f} s{tempo}), {result.codec}, in {result.seconds:.1f} s"
              + (", verified" if result.verification is not None else ""), highlight=False, markup=False)
    typer.echo(str(result.path))


def register(app: typer.Typer) -> None:
    """Add ``framefarm encode`` to the CLI."""
    app.command(name="encode")(encode)
