"""Evaluate every schedule a job carries, with each schedule's dotted field name in its errors.

Numeric schedules become one float64 array per schedule (the plan's per-frame ``values``); integer parameters
(``steps``, ``clip_skip``, ``anti_blur.kernel``) are truncated toward zero, as Deforum's ``int()`` does where it
uses them. Values that would make a frame meaningless are refused here, at job load, naming the first bad frame:
Deforum clamps some of them silently (strength) and crashes or renders garbage on others (an even blur kernel, a
zero zoom, a field of view of 180°).

String schedules (sampler, checkpoint) are evaluated by :func:`evaluate_string_schedules`; the seed schedule by
:mod:`framefarm.animation.seeds`. Both are checked here too, so ``framefarm validate`` reports every schedule error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from framefarm.animation.job_frames import parseq_values
from framefarm.animation.keyframes import parse_schedule, parse_string_schedule
from framefarm.errors import InputError

# ``job`` is typed Any here, not AnyJob: the job models (framefarm.job.schema) call into this module while they
# validate, so even a type-only import of them would close an import cycle.

__all__ = ["INTEGER_SCHEDULES", "evaluate_job_schedules", "evaluate_string_schedules", "frame_table"]

# Deforum reads these with int(): the series interpolates as floats and is truncated where it is used.
INTEGER_SCHEDULES = frozenset({"steps", "clip_skip", "anti_blur.kernel"})


@dataclasses.dataclass(frozen=True)
class _Rule:
    """A per-frame range check: ``bad(values)`` marks the frames that break it."""

    name: str
    bad: Callable[[np.ndarray], np.ndarray]
    problem: str
    fix: str


_RULES = (
    _Rule("strength", lambda v: (v < 0) | (v > 1), "must be between 0 and 1 (the share of the previous frame kept)",
          "Deforum clamps it silently; write values in 0 … 1, e.g. 0:(0.65)"),
    _Rule("noise", lambda v: (v < 0) | (v > 1), "must be between 0 and 1 (the weight of the noise image)",
          "Example: 0:(0.02)"),
    _Rule("contrast", lambda v: v < 0, "must be ≥ 0 (a multiplier of the pixel values)", "Example: 0:(1.0)"),
    _Rule("cfg_scale", lambda v: v < 0, "must be ≥ 0", "Example: 0:(7)"),
    _Rule("steps", lambda v: v < 1, "must be at least 1 sampling step (after truncation to a whole number)",
          "Example: 0:(25)"),
    _Rule("clip_skip", lambda v: (v < 1) | (v > 12), "must be a whole number from 1 to 12 (after truncation)",
          "Example: 0:(2)"),
    _Rule("fov", lambda v: (v <= 0) | (v >= 180), "must be strictly between 0 and 180 degrees",
          "Example: 0:(70)"),
    _Rule("near", lambda v: v <= 0, "must be > 0", "Example: 0:(200)"),
    _Rule("aspect_ratio", lambda v: v <= 0, "must be > 0", "Example: 0:(1)"),
    _Rule("anti_blur.amount", lambda v: v < 0, "must be ≥ 0 (0 turns anti-blur off)", "Example: 0:(0.1)"),
    _Rule("anti_blur.sigma", lambda v: v < 0, "must be ≥ 0", "Example: 0:(1.0)"),
    _Rule("anti_blur.threshold", lambda v: v < 0, "must be ≥ 0 (0 sharpens every pixel)", "Example: 0:(0)"),
)


_PARSEQ_SERIES = "the Parseq series"  # the "text" of a value that comes from a [parseq] table


def _fail(field: str, text: str, values: np.ndarray, bad: np.ndarray, problem: str, fix: str) -> InputError:
    frame = int(np.flatnonzero(bad)[0])
    count = int(bad.sum())
    where = f"at frame {frame}" + (f" (and {count - 1} more)" if count > 1 else "")
    if text == _PARSEQ_SERIES:  # a schedule example would not help: the values come from Parseq's curves
        fix = "Change the field's curve in Parseq (or the series in the job) so every frame is in range"
    return InputError(field, text, f"is {values[frame]:g} {where}; it {problem}", fix)


def _check_ranges(job: Any, values: dict[str, np.ndarray], fields: dict[str, tuple[str, str]]) -> None:
    """Refuse values that make a frame meaningless, naming the schedule and its first bad frame."""
    for rule in _RULES:
        if rule.name in values:
            bad = rule.bad(values[rule.name])
            if bad.any():
                raise _fail(*fields[rule.name], values[rule.name], bad, rule.problem, rule.fix)
    if "far" in values and "near" in values:
        bad = values["far"] <= values["near"]
        if bad.any():
            raise _fail(*fields["far"], values["far"], bad, "must be greater than near at every frame",
                        "Example: near 0:(200), far 0:(10000)")
    # The blur kernel only matters where anti-blur is on; there OpenCV needs an odd size ≥ 1 (Deforum crashes).
    kernel, amount = values.get("anti_blur.kernel"), values.get("anti_blur.amount")
    if kernel is not None and amount is not None:
        bad = (amount > 0) & ((kernel < 1) | (kernel % 2 == 0))
        if bad.any():
            raise _fail(*fields["anti_blur.kernel"], kernel, bad,
                        "must be odd and ≥ 1 wherever anti_blur.amount > 0 (the value is truncated to a whole number, "
                        "so a tween from 5 to 3 passes through 4)",
                        "Hold odd sizes with keys on both sides of a change, e.g. 0:(5), 29:(5), 30:(3)")
    if job.motion.perspective_flip.enabled:
        fv = values["perspective_flip.fv"]
        bad = (fv <= 0) | (fv >= 180)
        if bad.any():
            raise _fail(*fields["perspective_flip.fv"], fv, bad, "must be strictly between 0 and 180 degrees",
                        "Example: 0:(53)")
    uses_2d_camera = getattr(job, "animation_mode", "2D") == "2D"
    if uses_2d_camera and "zoom" in values:
        bad = values["zoom"] <= 0
        if bad.any():
            raise _fail(*fields["zoom"], values["zoom"], bad, "must be > 0 (1 keeps the size; 0 collapses the frame)",
                        "Example: 0:(1.0025)")


def evaluate_job_schedules(job: Any) -> dict[str, np.ndarray]:
    """Per-frame values of every numeric schedule of a job, checked.

    Args:
        job: a validated job spec (any kind); duck-typed so this module needs no pydantic. Reads
            ``job.motion.schedules()``, ``job.extra_schedules()`` when the kind has one (Deforum: cadence flow and
            hybrid), ControlNet weight schedules, and checks ``job.string_schedules()`` and the seed schedule.

    Returns:
        ``{"zoom": array, ..., "anti_blur.kernel": array, "hybrid.comp_alpha": array, "controlnet.0.weight": array}``,
        each float64 of length ``job.frames``; integer schedules already truncated.

    Raises:
        InputError: naming the field (``motion.zoom``), the schedule text and the fix; for an out-of-range value,
            also the first frame where it happens.
    """
    frames, seed, interpolation = job.frames, job.seed, job.motion.interpolation
    sources: dict[str, tuple[str, str]] = {}  # value name -> (field path, text)
    for name, text in job.motion.schedules().items():
        sources[name] = (f"motion.{name}", text)
    extra = getattr(job, "extra_schedules", None)
    for name, text in (extra() if extra else {}).items():
        sources[name] = (name, text)
    for i, unit in enumerate(job.controlnet):
        if unit.weight_schedule is not None:
            sources[f"controlnet.{i}.weight"] = (f"controlnet.{i}.weight_schedule", unit.weight_schedule)

    values = {
        name: parse_schedule(text, frames=frames, field=field, seed=seed, interpolation=interpolation)
        for name, (field, text) in sources.items()
    }
    # A Parseq table's series replace their schedules frame for frame (Deforum's adapter does the same).
    for name, (field, series) in parseq_values(job).items():
        values[name] = series
        sources[name] = (field, _PARSEQ_SERIES)
    for name in INTEGER_SCHEDULES & values.keys():
        values[name] = np.trunc(values[name])
    _check_ranges(job, values, sources)
    if getattr(job, "animation_mode", "2D") == "3D":
        from framefarm.animation.camera import check_3d_motion

        check_3d_motion(values, width=job.width, height=job.height)

    # Schedules that are not per-frame numbers of the plan: checked now, evaluated where they are used.
    evaluate_string_schedules(job)
    if job.seeds.schedule is not None:
        parse_schedule(job.seeds.schedule, frames=frames, field="seeds.schedule", seed=seed)
    return values


def evaluate_string_schedules(job: Any) -> dict[str, list[str]]:
    """Per-frame strings of the job's string schedules (Deforum jobs: ``sampler_schedule``, ``checkpoint_schedule``).

    Returns:
        ``{"sampler_schedule": ["Euler a", ...], ...}`` for the schedules that are set; empty for other kinds.
    """
    strings = getattr(job, "string_schedules", None)
    return {
        name: parse_string_schedule(text, frames=job.frames, field=name)
        for name, text in (strings() if strings else {}).items()
    }


def frame_table(job: Any, frames: range | None = None) -> list[dict[str, Any]]:
    """One row per frame with everything the schedules decide: seed, prompts, every value and string schedule.

    What ``framefarm plan`` can show per frame. Values are plain Python numbers (integer schedules as ``int``).

    Args:
        job: a validated job spec.
        frames: the frames to list (all by default).
    """
    from framefarm.animation.job_frames import job_prompts, job_seeds

    values = evaluate_job_schedules(job)
    strings = evaluate_string_schedules(job)
    cadence = getattr(job, "cadence", 1)
    seeds = job_seeds(job, [i % cadence == 0 for i in range(job.frames)])
    prompts = job_prompts(job)
    rows = []
    for i in frames if frames is not None else range(job.frames):
        row: dict[str, Any] = {"frame": i, "diffused": i % cadence == 0, "seed": int(seeds[i]),
                               "prompt": prompts[i].positive, "negative_prompt": prompts[i].negative}
        for name, column in values.items():
            row[name] = int(column[i]) if name in INTEGER_SCHEDULES else float(column[i])
        for name, column in strings.items():
            row[name] = column[i]
        rows.append(row)
    return rows
