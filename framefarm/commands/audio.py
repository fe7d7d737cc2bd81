"""``framefarm schedule-from-audio``: a sound file (or a tempo) → a keyframe schedule string for a job.

Contract: the schedule string (or, with ``--json``, one JSON document; with ``--as-set``, one ``--set`` argument) is
the only thing on stdout, so ``--set "$(framefarm schedule-from-audio track.wav --as-set …)"`` feeds a render
directly; invalid input exits 2 with one message on stderr naming the option.

(It is a top-level command, not ``schedule from-audio``, because ``schedule`` already evaluates schedules.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("schedule-from-audio")(schedule_from_audio)


def _motion_fields() -> list[str]:
    from framefarm.job import Motion

    return list(Motion().schedules())


def _nested(param: str, schedule: str) -> dict:
    head, _, rest = param.partition(".")
    return {head: {rest: schedule}} if rest else {head: schedule}


def schedule_from_audio(
    track: Annotated[Optional[Path], typer.Argument(help="Sound file (anything ffmpeg reads); optional with --bpm.",
                                                    show_default=False)] = None,
    fps: Annotated[float, typer.Option("--fps", help="Frames per second of the job.")] = 30.0,
    param: Annotated[str, typer.Option("--param", help="The motion schedule it is for (zoom, angle, strength …).")]
    = "zoom",
    value_map: Annotated[str, typer.Option("--map", help="Values for silence and for the loudest: LOW:HIGH.")]
    = "1.0:1.05",
    frames: Annotated[Optional[int], typer.Option("--frames", min=1, help="Frames (default: the track's length, or "
                                                                          "--beats at --bpm).")] = None,
    feature: Annotated[str, typer.Option("--feature", help="loudness (dB level), onset (hits) or rms.")]
    = "loudness",
    bpm: Annotated[Optional[float], typer.Option("--bpm", help="Beat-locked pulses at this tempo.")] = None,
    beats: Annotated[Optional[int], typer.Option("--beats", min=1, help="Length in beats (frames = beats at --bpm; "
                                                                        "must be whole).")] = None,
    first_beat: Annotated[float, typer.Option("--first-beat", help="Seconds into the track of the first beat.")]
    = 0.0,
    offset: Annotated[float, typer.Option("--offset", help="Seconds into the video where the track starts (as "
                                                           "output.audio_offset).")] = 0.0,
    decay: Annotated[float, typer.Option("--decay", help="Beats for a pulse to fall to 1/e.")] = 0.25,
    attack: Annotated[float, typer.Option("--attack", min=0.0, help="Envelope rise time, seconds.")] = 0.0,
    release: Annotated[float, typer.Option("--release", min=0.0, help="Envelope fall time, seconds.")] = 0.15,
    range_db: Annotated[float, typer.Option("--range-db", help="Loudness range mapped onto LOW…HIGH, dB.")] = 48.0,
    precision: Annotated[int, typer.Option("--precision", min=0, max=12, help="Decimals written.")] = 4,
    every_frame: Annotated[bool, typer.Option("--every-frame", help="A key on every frame (for quadratic or cubic "
                                                                    "interpolation).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document with values and beats.")] = False,
    as_set: Annotated[bool, typer.Option("--as-set", help="Print motion.PARAM=SCHEDULE for --set.")] = False,
) -> None:
    """Turn the loudness or onsets of a sound file into a keyframe schedule (--bpm: beat-locked pulses)."""
    from framefarm.animation.audio_schedule import beats_to_frames, make_schedule, parse_map
    from framefarm.errors import FramefarmError, InputError

    try:
        if not (fps > 0 and math.isfinite(fps)):
            raise InputError("--fps", fps, "must be > 0", "Example: --fps 30")
        names = _motion_fields()
        if param not in names:
            raise InputError("--param", param, "is not a motion schedule", f"Use one of: {', '.join(names)}")
        low, high = parse_map(value_map)
        if beats is not None and bpm is None:
            raise InputError("--beats", beats, "needs --bpm", "Example: --bpm 128 --beats 16")
        pcm = None
        if track is not None:
            from framefarm.video.audio_decode import decode_pcm

            pcm = decode_pcm(track, field="track")
        if frames is None:
            if bpm is not None and beats is not None:
                frames = beats_to_frames(bpm, beats, fps)
            elif pcm is not None:
                frames = max(1, math.ceil((pcm.duration + offset) * fps - 1e-9))
            else:
                raise InputError("--frames", problem="is needed: there is no track and no --beats to take the length "
                                 "from", fix="Give --beats 16 (with --bpm) or --frames 240")
        result = make_schedule(
            fps=fps, frames=frames, value_range=(low, high), samples=None if pcm is None else pcm.samples,
            rate=None if pcm is None else pcm.rate, feature=feature, bpm=bpm, offset=offset, first_beat=first_beat,
            decay=decay, range_db=range_db, attack=attack, release=release, precision=precision,
            every_frame=every_frame,
        )
        # The schedule must be one a job accepts for this field (strength in 0…1, a non-zero zoom …): check now.
        from framefarm.job import validate_job

        validate_job({"kind": "deforum", "name": "schedule-check", "frames": frames, "fps": fps,
                      "motion": _nested(param, result.schedule)}, source="--map")
    except FramefarmError as exc:
        from framefarm.cli_output import fail

        fail(exc)
    if as_json:
        typer.echo(json.dumps({
            "field": f"motion.{param}", "schedule": result.schedule, "frames": frames, "fps": fps,
            "map": [low, high], "feature": None if track is None else feature, "bpm": bpm, "beats": beats,
            "beat_frames": list(result.beats), "values": [round(float(v), precision) for v in result.values],
        }))
    elif as_set:
        typer.echo(f"motion.{param}={result.schedule}")
    else:
        typer.echo(result.schedule)
