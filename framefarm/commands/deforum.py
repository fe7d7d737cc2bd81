"""Deforum commands: ``schedule`` (evaluate or plot schedules), ``prompts`` (per-frame prompts), ``import-deforum``.

Contract (checks rely on it): ``--json`` output is the only thing on stdout; invalid input exits 2 with one line on
stderr naming what is wrong; ``import-deforum`` and ``schedule --plot`` print the written file's path last.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

MAX_FRAMES = 1_000_000  # the job spec's limit
FramesOpt = Annotated[int, typer.Option("--frames", min=1, max=MAX_FRAMES,
                                        help="Frames in the job (max_f is frames - 1).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]

PLOT_SIZE = (960, 480)
PLOT_COLOURS = ((200, 90, 30), (40, 140, 40), (30, 60, 200), (160, 40, 160), (0, 140, 170), (90, 90, 90))


def register(app: typer.Typer) -> None:
    app.command("schedule")(schedule)
    app.command("prompts")(prompts)
    app.command("import-deforum")(import_deforum)


# ----- framefarm schedule -------------------------------------------------------------------------------------------


def schedule(
    schedules: Annotated[list[str], typer.Argument(help='Deforum schedule(s), e.g. "0:(1), 30:(1.5+0.1*sin(t))".',
                                                   show_default=False)],
    frames: FramesOpt,
    interpolation: Annotated[str, typer.Option("--interpolation", help="linear, quadratic or cubic.")] = "linear",
    seed: Annotated[int, typer.Option("--seed", help="The value of s in expressions (Deforum's default: -1).")] = -1,
    kind: Annotated[str, typer.Option("--kind", help="auto, number or string (auto: string when every value is a "
                                                     "quoted string).")] = "auto",
    as_json: JsonOpt = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the curve(s) into this PNG.")] = None,
) -> None:
    """Evaluate Deforum schedules frame by frame: a JSON list per schedule (numbers, or strings for a string
    schedule such as a sampler schedule), a table, or a plot."""
    from framefarm.errors import FramefarmError

    try:
        series = _evaluate(schedules, frames=frames, interpolation=interpolation, seed=seed, kind=kind)
        if plot is not None:
            _plot(series, schedules, plot)
    except FramefarmError as exc:
        from framefarm.cli_output import fail

        fail(exc)
    if as_json:
        typer.echo(json.dumps(series[0] if len(series) == 1 else series))
    elif plot is None:
        for frame in range(frames):
            typer.echo("\t".join([str(frame), *(_shown(column[frame]) for column in series)]))
    if plot is not None:
        if as_json:
            typer.echo(f"plot written to {plot}", err=True)
        else:
            typer.echo(str(plot))


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _evaluate(schedules: list[str], *, frames: int, interpolation: str, seed: int, kind: str) -> list[list[Any]]:
    from framefarm.animation.keyframes import INTERPOLATORS, is_string_schedule, parse_schedule, parse_string_schedule
    from framefarm.errors import InputError

    if interpolation not in INTERPOLATORS:
        raise InputError("--interpolation", interpolation, "is not an interpolation",
                         f"Use one of: {', '.join(INTERPOLATORS)}")
    if kind not in ("auto", "number", "string"):
        raise InputError("--kind", kind, "is not a schedule kind", "Use auto, number or string")
    out: list[list[Any]] = []
    for index, text in enumerate(schedules):
        field = "schedule" if len(schedules) == 1 else f"schedule {index + 1}"
        if kind == "string" or (kind == "auto" and is_string_schedule(text)):
            out.append(parse_string_schedule(text, frames=frames, field=field))
        else:
            values = parse_schedule(text, frames=frames, field=field, seed=seed,
                                    interpolation=interpolation)  # type: ignore[arg-type]
            out.append([float(v) for v in values])
    return out


def _plot(series: list[list[Any]], labels: list[str], path: Path) -> None:
    """Draw the schedules with OpenCV: numeric ones as curves on shared axes; string ones as steps between their
    distinct values (one level per string, labelled).

    A raster image, not the report's SVG plots (:mod:`framefarm.report.svg`): ``--plot`` has always written the PNG
    or JPEG its path names, for image viewers and scripts that read pixels, and no kept library turns SVG into PNG.
    The tick rule is the report's (:func:`framefarm.report.svg.nice_step`)."""
    import cv2
    import numpy as np

    from framefarm.errors import InputError

    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise InputError("--plot", str(path), "must end in .png or .jpg")
    width, height = PLOT_SIZE
    left, right, top = 90, 20, 20
    image = np.full((height + 18 * len(series), width, 3), 255, np.uint8)
    plot_w, plot_h = width - left - right, height - top - 50
    frames = len(series[0])
    levels: list[str] = []
    numeric = []
    for column in series:
        if column and isinstance(column[0], str):
            for value in column:
                if value not in levels:
                    levels.append(value)
            numeric.append([float(levels.index(v)) for v in column])
        else:
            numeric.append([float(v) for v in column])
    all_values = np.array(numeric, dtype=np.float64)
    low, high = float(all_values.min()), float(all_values.max())
    if high - low < 1e-12:
        low, high = low - 1.0, high + 1.0
    pad = (high - low) * 0.05
    low, high = low - pad, high + pad

    def to_px(frame: np.ndarray, value: np.ndarray) -> np.ndarray:
        x = left + (frame / max(frames - 1, 1)) * plot_w
        y = top + (high - value) / (high - low) * plot_h
        return np.stack([x, y], axis=-1)

    font, grey, black = cv2.FONT_HERSHEY_SIMPLEX, (210, 210, 210), (40, 40, 40)
    # Grid and tick labels: 5 value ticks, up to 10 frame ticks.
    for value in _nice_ticks(low + pad, high - pad):
        if not low <= value <= high:
            continue
        y = int(round(top + (high - value) / (high - low) * plot_h))
        cv2.line(image, (left, y), (left + plot_w, y), grey, 1)
        cv2.putText(image, f"{value:.4g}", (6, y + 5), font, 0.45, black, 1, cv2.LINE_AA)
    for frame in np.unique(np.linspace(0, frames - 1, min(frames, 10)).round().astype(int)):
        x = int(round(left + frame / max(frames - 1, 1) * plot_w))
        cv2.line(image, (x, top), (x, top + plot_h), grey, 1)
        cv2.putText(image, str(frame), (x - 8, top + plot_h + 18), font, 0.45, black, 1, cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (left + plot_w, top + plot_h), black, 1)
    cv2.putText(image, "frame", (left + plot_w // 2 - 20, top + plot_h + 38), font, 0.5, black, 1, cv2.LINE_AA)
    for index, column in enumerate(numeric):
        colour = PLOT_COLOURS[index % len(PLOT_COLOURS)]
        values = np.asarray(column)
        frame_axis = np.arange(frames, dtype=np.float64)
        if isinstance(series[index][0], str):  # steps: hold each value until the next frame
            frame_axis = np.repeat(frame_axis, 2)[1:]
            values = np.repeat(values, 2)[:-1]
        points = np.round(to_px(frame_axis, values)).astype(np.int32)
        cv2.polylines(image, [points.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)
        if frames <= 200:
            for x, y in points[:: 2 if isinstance(series[index][0], str) else 1]:
                cv2.circle(image, (int(x), int(y)), 2, colour, -1, cv2.LINE_AA)
        label = labels[index] if len(labels[index]) <= 110 else labels[index][:107] + "..."
        y = height + 18 * index - 4
        cv2.line(image, (left, y - 4), (left + 24, y - 4), colour, 3)
        cv2.putText(image, label, (left + 32, y), font, 0.45, black, 1, cv2.LINE_AA)
    for level, text in enumerate(levels):  # string levels, labelled inside the plot
        y = int(round(top + (high - level) / (high - low) * plot_h))
        cv2.putText(image, text[:40], (left + 6, y - 6), font, 0.45, black, 1, cv2.LINE_AA)
    ok, encoded = cv2.imencode(path.suffix.lower(), image)
    if not ok:
        raise InputError("--plot", str(path), "could not be encoded")
    try:
        path.write_bytes(encoded.tobytes())
    except OSError as exc:
        raise InputError("--plot", str(path), f"cannot be written: {exc.strerror}") from None


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten, the report's rule) covering low…high."""
    import math

    from framefarm.report.svg import nice_step

    step = nice_step(max(high - low, 1e-12), target=max(count - 1, 1))
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((high - first) / step + 1e-9) + 1)]


# ----- framefarm prompts --------------------------------------------------------------------------------------------


def prompts(
    prompts_file: Annotated[Path, typer.Argument(help="JSON with Deforum's prompts, positive_prompts and "
                                                      "negative_prompts (a settings file works).", show_default=False)],
    frames: Annotated[Optional[int], typer.Option("--frames", min=1, max=MAX_FRAMES,
                                                  help="Frames (default: the file's max_frames).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Lets backtick math use s (the seed).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Each frame's prompt and negative prompt, as Deforum builds them (--neg, global prompts, backtick math)."""
    from framefarm.errors import FramefarmError

    try:
        rows, note = _prompt_rows(prompts_file, frames, seed)
    except FramefarmError as exc:
        from framefarm.cli_output import fail

        fail(exc)
    if note:
        typer.echo(note, err=True)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    start = 0
    for frame in range(1, len(rows) + 1):  # one line per run of frames with the same prompts
        if frame == len(rows) or rows[frame] != rows[start]:
            span = f"{start}" if frame - 1 == start else f"{start}-{frame - 1}"
            negative = f"  --neg {rows[start]['negative_prompt']}" if rows[start]["negative_prompt"] else ""
            typer.echo(f"{span}\t{rows[start]['prompt']}{negative}")
            start = frame


def _prompt_rows(path: Path, frames: int | None, seed: int | None) -> tuple[list[dict[str, str]], str]:
    from framefarm.animation.deforum_import import read_settings, unmerge_global_prompts
    from framefarm.animation.prompts import prompts_for_frames
    from framefarm.errors import InputError

    data = read_settings(path)
    raw = data.get("prompts")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise InputError("prompts", raw, "is text that is not a JSON object of prompts") from None
    if not isinstance(raw, dict):
        raise InputError("prompts", raw if raw is not None else "missing",
                         "must be an object mapping frames to prompts", 'Example: {"prompts": {"0": "a cat"}}')
    if frames is None:
        if "max_frames" not in data:
            raise InputError("--frames", problem="is needed (the file has no max_frames)", fix="Example: --frames 120")
        frames = data["max_frames"]
        if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
            raise InputError("max_frames", frames, f"must be a whole number from 1 to {MAX_FRAMES:,}")
    texts = {}
    for field, keys in (("positive", ("positive_prompts", "animation_prompts_positive")),
                        ("negative", ("negative_prompts", "animation_prompts_negative"))):
        found = [data[k] for k in keys if data.get(k)]
        if any(not isinstance(v, str) for v in found):
            raise InputError("/".join(keys), found, "must be text")
        if len({v.strip() for v in found}) > 1:
            raise InputError("/".join(keys), found, "contradict each other (two different global prompts)")
        texts[field] = found[0] if found else ""
    prompts_map = {str(k): v for k, v in raw.items()}
    if any(not isinstance(v, str) for v in prompts_map.values()):
        raise InputError("prompts", raw, "must map frames to prompt texts")
    prompts_map, unmerged = unmerge_global_prompts(prompts_map, texts["positive"], texts["negative"], frames=frames)
    note = ("note: the prompts already held the global positive/negative prompts (saved by a Deforum run); they are "
            "applied once") if unmerged else ""
    result = prompts_for_frames(prompts_map, frames=frames, positive=texts["positive"], negative=texts["negative"],
                                seed=seed)
    return [{"prompt": p.positive, "negative_prompt": p.negative} for p in result], note


# ----- framefarm import-deforum -------------------------------------------------------------------------------------


def import_deforum(
    settings_file: Annotated[Path, typer.Argument(help="A Deforum settings file (*_settings.txt, JSON).",
                                                  show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The job file to write (TOML).", show_default=False)],
    seed: Annotated[Optional[int], typer.Option("--seed", help="Job seed (default: the file's; a random one when "
                                                              "the file says -1).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Job name (default: the file's batch_name).")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Leave out schedules that do not parse "
                                                                      "(reported) instead of failing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the job file.")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Also write the full report (every key) as "
                                                                    "JSON.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List the ignored keys too.")] = False,
    parseq_manifest: Annotated[Optional[Path], typer.Option(
        "--parseq-manifest", help="A local copy of the file's Parseq manifest, read instead of its "
                                  "parseq_manifest setting (framefarm never fetches a URL).")] = None,
) -> None:
    """Turn a Deforum settings file into a framefarm job file; lists what was not carried over, and why."""
    from framefarm.errors import FramefarmError

    try:
        result, text = _import(settings_file, out, seed, name, skip_invalid, force, parseq_manifest)
        if report is not None:
            report.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except FramefarmError as exc:
        from framefarm.cli_output import fail

        fail(exc)
    except OSError as exc:
        from framefarm.cli_output import fail
        from framefarm.errors import InputError

        fail(InputError("--out", str(exc.filename or out), f"cannot be written: {exc.strerror}"))
    err = typer.echo
    err(f"imported {settings_file.name}: {result.summary()}", err=True)
    shown = ("unsupported", "refused", "ignored") if verbose else ("unsupported", "refused")
    for status in shown:
        for entry in result.with_status(status):
            err(f"  {status}: {entry.key}: {entry.why}", err=True)
    for note in result.notes:
        err(f"  note: {note}", err=True)
    typer.echo(str(out))


def _import(settings_file: Path, out: Path, seed: int | None, name: str | None, skip_invalid: bool, force: bool,
            parseq_manifest: Path | None = None):
    from framefarm.animation.deforum_import import import_deforum as run_import
    from framefarm.animation.deforum_import import read_settings, report_header, to_toml
    from framefarm.errors import InputError
    from framefarm.job import random_seed, validate_job

    if out.exists() and not force:
        raise InputError("--out", str(out), "already exists", "Pass --force to overwrite it, or choose another path")
    if out.suffix.lower() != ".toml":
        raise InputError("--out", str(out), "must be a .toml job file")
    settings = read_settings(settings_file)
    try:  # Deforum's -1 means a random seed per run: draw one now, so the job is reproducible
        wants_random = int(float(settings.get("seed", -1))) == -1
    except (TypeError, ValueError):
        wants_random = False  # the importer reports the bad value, naming the key
    if seed is None and wants_random:
        seed = random_seed()
    result = run_import(settings, seed=seed, name=name, invalid="skip" if skip_invalid else "error",
                        source=settings_file.name, parseq_manifest=parseq_manifest)
    # Check the job exactly as `framefarm render` will load it (named after its file unless it has a name).
    job = dict(result.job)
    job.setdefault("name", re.sub(r"[^A-Za-z0-9._-]", "-", out.stem).lstrip("._-") or "job")
    validate_job(job, source=str(out))
    text = to_toml(result.job, report_header(result, settings_file.name))
    out.write_text(text, encoding="utf-8")
    return result, text
