"""The finishing stage: frames in, a checked deliverable out. The ``encode`` command and the render flow both call
:func:`finish`.

Order of work, all streamed (memory holds a few frames, whatever the clip's length):

1. loop closing (crossfade / matched frame) on the rendered frames;
2. upscaling (Lanczos or an ESRGAN-family model), before interpolation: models cost far more per frame than flow;
3. interpolation (optical flow, minterpolate or RIFE), the loop's wrap pair included;
4. resize to an explicit output size, if one is asked for, then centre-crop to the codec's size rules (HAP: ×4);
5. encode by streaming raw frames into ffmpeg, under a partial name;
6. mux the sound track (offset, trimmed to the frames), stream-copying the video;
7. decode the result and check frames, size, fps, duration and pixel format against the plan;
8. rename into place.

Everything that can be checked before encoding is (codec and size rules, audio file, model file, BPM-exact length
when the frame count is known), so bad input fails in a second, not after an hour of encoding.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from framefarm.errors import InputError
from framefarm.images import fit_cover
from framefarm.storage.atomic import discard, publish
from framefarm.video.audio import AudioTrack, mux_audio
from framefarm.video.codecs import Codec, fit_size, get_codec
from framefarm.video.encode import write_video_frames, output_name, partial_path
from framefarm.video.frames import frame_folder, has_alpha_channel, list_frame_files
from framefarm.video.gif import check_gif_rate
from framefarm.video.interpolate import InterpolateSpec, interpolate as run_interpolation, interpolated_count
from framefarm.video.loops import LoopSpec, MatchReport, check_bpm, close_loop, closed_length, parse_loop
from framefarm.video.upscale import UpscaleSpec, make_upscaler, parse_upscale
from framefarm.video.verify import Verification, check_output


@dataclass(frozen=True)
class FinishResult:
    """What :func:`finish` wrote.

    Attributes:
        path: the published file (or folder, for a PNG sequence).
        codec: the preset's name.
        width, height, fps, frames, duration: what the output holds (checked by decoding it).
        loop: the clip is a loop (its last frame leads into its first).
        bpm, beats: the loop's tempo and length in beats, when a BPM was given.
        notes: things the user should know (frames cropped to the codec's size rules, alpha dropped, the loop cut).
        verification: the decode check of the output (``None`` when verification was switched off).
        seconds: wall time of the whole stage.
    """

    path: Path
    codec: str
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    loop: bool
    bpm: float | None
    beats: int | None
    notes: tuple[str, ...]
    verification: Verification | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (what a live tool's "clip ready" message needs: path, fps, frames, BPM, beats)."""
        data = asdict(self)
        data["path"] = str(self.path)
        data["notes"] = list(self.notes)
        data.pop("verification")
        data["verified"] = self.verification.ok if self.verification is not None else None
        return data


@dataclass
class _Counter:
    count: int = 0


def _counted(frames: Iterable[np.ndarray], counter: _Counter) -> Iterator[np.ndarray]:
    for frame in frames:
        counter.count += 1
        yield frame


def _as_loop(loop: bool | str | LoopSpec | None) -> LoopSpec | None:
    if loop is None or loop is False:
        return None
    if loop is True:
        return LoopSpec()
    if isinstance(loop, LoopSpec):
        return loop
    return parse_loop(loop)


def _as_interpolation(interpolate: int | InterpolateSpec | None, method: str, model: str | Path | None
                      ) -> InterpolateSpec | None:
    if interpolate is None:
        return None
    if isinstance(interpolate, InterpolateSpec):
        spec = interpolate
    else:
        try:
            factor = int(interpolate)
        except (TypeError, ValueError):
            raise InputError("interpolate", interpolate, "is not a whole factor", "Example: --interpolate 2") from None
        if factor != float(interpolate):
            raise InputError("interpolate", interpolate, "is not a whole factor", "Example: --interpolate 2")
        spec = InterpolateSpec(factor=factor, method=method,  # type: ignore[arg-type]
                               model=Path(model) if model else None)
    return spec if spec.factor > 1 else None


def resolve_output_path(out: str | Path, codec: Codec) -> Path:
    """``out`` with the codec's container suffix added when it has none; an :class:`InputError` for a wrong one."""
    out = Path(out)
    suffix = out.suffix.lower()
    if codec.is_sequence:
        if suffix and suffix not in (".png", ".frames"):
            raise InputError("-o", str(out), "the png preset writes a folder of frames",
                             f"Give a folder name without a suffix, e.g. {out.with_suffix('')}")
        return out
    if not suffix:
        return out.with_name(out.name + codec.suffix)
    if suffix not in codec.suffixes:
        raise InputError("-o", str(out), f"{codec.name} writes {' or '.join(codec.suffixes)} files, not {suffix}",
                         f"Use -o {out.with_suffix(codec.suffix)} or leave the suffix out")
    return out


def finish(
    frames: str | Path | Sequence[np.ndarray] | Iterable[np.ndarray],
    out: str | Path,
    *,
    fps: float,
    codec: str | Codec = "h264",
    crf: int | None = None,
    encoder_preset: str = "veryfast",
    width: int | None = None,
    height: int | None = None,
    audio: str | Path | None = None,
    audio_offset: float = 0.0,
    upscale: str | float | UpscaleSpec | None = None,
    interpolate: int | InterpolateSpec | None = None,
    interpolate_method: str = "flow",
    interpolate_model: str | Path | None = None,
    loop: bool | str | LoopSpec | None = None,
    bpm: float | None = None,
    beats: int | None = None,
    name: str | None = None,
    verify: bool = True,
) -> FinishResult:
    """Turn frames into a finished, verified video (see the module docstring for the steps).

    Args:
        frames: a folder of images (natural name order), a sequence of frames (``len`` known: lengths are checked
            up front), or any iterable of ``(H, W, 3|4)`` uint8 RGB(A) arrays.
        out: the output file (its suffix is added when missing), or with ``name`` the folder it goes in.
        fps: the frames' rate; interpolation multiplies it by its factor (the duration stays).
        codec: an encode preset (``h264``, ``h265``, ``prores``, ``prores4444``, ``hap``, ``hapq``, ``hapalpha``,
            ``dnxhr``, ``webm``, ``gif``, ``png``).
        crf: quality for h264/h265/webm (defaults 18 / 20 / 30).
        encoder_preset: x264/x265 speed preset.
        width, height: output size (frames are scaled to cover it and centre-cropped); default: the frames' size
            after upscaling.
        audio, audio_offset: a sound file and when it starts (seconds; negative skips into the file).
        upscale: ``2``, ``"lanczos:2"`` or a model file (see :mod:`framefarm.video.upscale`).
        interpolate, interpolate_method, interpolate_model: factor (2: one new frame per pair), ``flow`` |
            ``minterpolate`` | ``rife``, and RIFE's TorchScript file.
        loop: ``True``/``"wrap"`` (the frames already loop), ``"crossfade[:N]"``, ``"match[:N]"`` or a
            :class:`LoopSpec`; ``None`` for a clip that is not a loop.
        bpm, beats: the loop's tempo; the output must be a whole number of beats (``beats`` exactly, when given).
        name: with it, ``out`` is a folder and the file is named
            ``<name>_<W>x<H>_<fps>fps_<N>f[_<bpm>bpm_<beats>beats][_<codec>]<suffix>``.
        verify: decode the output and check it against the plan before publishing it.

    Returns:
        A :class:`FinishResult`.

    Raises:
        InputError: invalid settings or frames (exit code 2 in the CLI).
        RenderError: ffmpeg, a model or the verification failed (exit code 1).
    """
    started = time.perf_counter()
    notes: list[str] = []
    # ----- 1. Settings, checked before any work
    codec = codec if isinstance(codec, Codec) else get_codec(codec)
    if crf is None:
        crf = {"h265": 20, "webm": 30}.get(codec.name, 18)
    max_crf = 63 if codec.name == "webm" else 51
    if codec.uses_crf and not 0 <= crf <= max_crf:
        raise InputError("crf", crf, f"must be between 0 and {max_crf} for {codec.name}", "Example: --crf 18")
    if fps <= 0:
        raise InputError("fps", fps, "must be greater than 0", "Example: --fps 25")
    loop_spec = _as_loop(loop)
    interp = _as_interpolation(interpolate, interpolate_method, interpolate_model)
    upscale_spec = upscale if isinstance(upscale, UpscaleSpec) or upscale is None else parse_upscale(upscale)
    if (width is None) != (height is None):
        raise InputError("size", f"{width}x{height}", "give both width and height, or neither")
    track = None
    if audio is not None:
        if codec.audio_codec is None:
            raise InputError("audio", str(audio), f"cannot go into {codec.label}: the format has no sound track",
                             "Use --codec h264, prores, hap … or leave out --audio")
        track = AudioTrack.checked(audio, audio_offset)
    if bpm is not None and bpm <= 0:
        raise InputError("bpm", bpm, "must be greater than 0", "Example: --bpm 128")
    if beats is not None and bpm is None:
        raise InputError("beats", beats, "needs a BPM", "Add --bpm (e.g. --bpm 128)")

    # ----- 2. The source: its size, alpha and (when known) length
    if isinstance(frames, (str, Path)):
        files = list_frame_files(frames)
        alpha_in = codec.supports_alpha and has_alpha_channel(files[0])
        source: Sequence[np.ndarray] | Iterable[np.ndarray] = frame_folder(frames, alpha=alpha_in)
        if codec.is_sequence and name is None and Path(out).resolve() == Path(frames).resolve():
            raise InputError("-o", str(out), "is the frames folder itself", "Write the PNG sequence somewhere else")
    else:
        source = frames
    count_in = len(source) if isinstance(source, Sequence) else None
    if count_in is not None:
        if count_in == 0:
            raise InputError("frames", 0, "there are no frames to encode")
        first = source[0]
        stream: Iterator[np.ndarray] = iter(source)
    else:
        stream = iter(source)
        try:
            first = next(stream)
        except StopIteration:
            raise InputError("frames", 0, "there are no frames to encode") from None
        stream = itertools.chain([first], stream)
    if first.ndim != 3 or first.shape[2] not in (3, 4) or first.dtype != np.uint8:
        raise InputError("frames", f"{first.dtype} {first.shape}", "frames must be (H, W, 3|4) uint8 arrays")
    in_h, in_w = first.shape[:2]
    alpha = first.shape[2] == 4 and codec.supports_alpha
    if first.shape[2] == 4 and not codec.supports_alpha:
        notes.append(f"{codec.name} has no alpha channel: alpha is dropped (use prores4444, hapalpha, webm or png)")
        stream = (frame[..., :3] for frame in stream)

    # ----- 3. The plan: every size and count the output will have
    closed = closed_length(count_in, loop_spec) if count_in is not None else None
    upscaler = make_upscaler(upscale_spec)  # loads a model now, so a bad weight file fails before encoding
    up_w, up_h = upscaler.output_size(in_w, in_h) if upscaler else (in_w, in_h)
    target_w, target_h = (width, height) if width is not None else (up_w, up_h)
    out_w, out_h, size_note = fit_size(codec, target_w, target_h)
    if size_note:
        notes.append(size_note)
    factor = interp.factor if interp else 1
    out_fps = fps * factor
    if codec.name == "gif":
        check_gif_rate(out_fps)
    is_loop = loop_spec is not None
    planned = interpolated_count(closed, factor, loop=is_loop) if closed is not None else None
    if bpm is not None and planned is not None:
        beats = check_bpm(planned, out_fps, bpm, beats)
    if name is None:
        out_path = resolve_output_path(out, codec)
    else:
        out_dir = Path(out)
        # Named after the plan; a matched-frame loop learns its length while encoding and is renamed then.
        out_path = out_dir / output_name(name, width=out_w, height=out_h, fps=out_fps, frames=planned or 0,
                                         suffix=codec.suffix, bpm=bpm, beats=beats, codec=codec.name)

    # ----- 4. The pipeline (lazy: nothing runs until the encoder pulls frames)
    match_report = MatchReport()
    stream = iter(close_loop(stream, loop_spec, match_report))
    if upscaler is not None:
        stream = upscaler(stream, in_w, in_h)
    if interp is not None:
        stream = run_interpolation(stream, interp, loop=is_loop, fps=fps, count=closed)
    if (target_w, target_h) != (up_w, up_h):
        stream = (fit_cover(frame, target_w, target_h) for frame in stream)
    if (out_w, out_h) != (target_w, target_h):
        x0, y0 = (target_w - out_w) // 2, (target_h - out_h) // 2
        stream = (np.ascontiguousarray(frame[y0:y0 + out_h, x0:x0 + out_w]) for frame in stream)
    counter = _Counter()
    stream = _counted(stream, counter)

    # ----- 5. Encode (and 6. mux) under partial names
    final_partial = partial_path(out_path)
    video_target = out_path.with_name(out_path.stem + ".video" + out_path.suffix) if track else out_path
    written = write_video_frames(stream, video_target, width=out_w, height=out_h, fps=out_fps, crf=crf,
                            preset=encoder_preset, codec=codec, alpha=alpha, publish_output=False)
    try:
        frames_out = counter.count
        if loop_spec is not None and loop_spec.close == "match":
            notes.append(f"loop closed at source frame {match_report.cut} (mean difference to frame 0: "
                         f"{match_report.difference:.1f}/255); {match_report.dropped} tail frame(s) dropped")
        if bpm is not None:
            beats = check_bpm(frames_out, out_fps, bpm, beats)
        if name is not None and planned is None:
            out_path = Path(out) / output_name(name, width=out_w, height=out_h, fps=out_fps, frames=frames_out,
                                               suffix=codec.suffix, bpm=bpm, beats=beats, codec=codec.name)
        if track is not None:
            final = mux_audio(written, track, partial_path(out_path), codec=codec, duration=frames_out / out_fps)
            discard(written)
            written = final
        elif written != partial_path(out_path):
            written = written.rename(partial_path(out_path))
        # ----- 7. Verify, 8. publish
        verification = None
        if verify:
            verification = check_output(written, codec=codec, frames=frames_out if planned is None else planned,
                                        width=out_w, height=out_h, fps=out_fps, alpha=alpha,
                                        audio=track is not None)
        published = publish(written, out_path)
    except BaseException:
        discard(written)
        discard(final_partial)
        raise
    return FinishResult(path=published, codec=codec.name, width=out_w, height=out_h, fps=out_fps, frames=frames_out,
                        duration=frames_out / out_fps, loop=is_loop, bpm=bpm, beats=beats, notes=tuple(notes),
                        verification=verification, seconds=time.perf_counter() - started)


def output_settings(output: Any) -> dict[str, Any]:
    """:func:`finish` keyword arguments from a job's ``output`` table (:class:`framefarm.job.Output`)."""
    loop = LoopSpec(close=output.loop_close, frames=output.loop_frames) if output.loop else None
    return {
        "codec": output.codec, "crf": output.crf, "encoder_preset": output.encoder_preset,
        "width": output.width, "height": output.height,
        "audio": output.audio, "audio_offset": output.audio_offset, "upscale": output.upscale,
        "interpolate": output.interpolate, "interpolate_method": output.interpolate_method,
        "interpolate_model": output.interpolate_model, "loop": loop, "bpm": output.bpm, "beats": output.beats,
    }


def check_job_output(frames: int, fps: float, output: Any) -> tuple[int | None, float, int | None]:
    """What a job's ``output`` table makes of ``frames`` at ``fps``: (frames, fps, beats) of the deliverable.

    Raises the same :class:`InputError` as :func:`finish` would for a loop that is not a whole number of beats, a
    crossfade longer than half the clip, or an interpolation setting that is invalid, so a job can be checked
    before any frame is rendered. The frame count is ``None`` for a matched-frame loop (known only after the cut).
    """
    settings = output_settings(output)
    loop = settings["loop"]
    # Only the factor counts here. RIFE's weight file is checked when the finish runs: a job is validated where that
    # file may not be (and an API job's paths are checked against its media roots before anything looks at them).
    method = "flow" if settings["interpolate_method"] == "rife" else settings["interpolate_method"]
    interp = _as_interpolation(settings["interpolate"], method, None)
    closed = closed_length(frames, loop)
    factor = interp.factor if interp else 1
    out_fps = fps * factor
    if settings["codec"] == "gif":
        check_gif_rate(out_fps, field="fps")
    planned = interpolated_count(closed, factor, loop=loop is not None) if closed is not None else None
    beats = settings["beats"]
    if settings["bpm"] is not None and planned is not None:
        beats = check_bpm(planned, out_fps, settings["bpm"], beats)
    return planned, out_fps, beats
