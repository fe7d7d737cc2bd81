"""A job's per-frame inputs from wherever they come: keyframe schedules, or a Parseq table's per-frame series.

The planner, ``framefarm plan --frames`` and the schedule checks at job load all go through here, so a Parseq job
renders with exactly the values it shows. Jobs are duck-typed (no pydantic here): a job without a ``parseq`` table,
or any kind other than Deforum, gets its schedules' values unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from framefarm.animation.prompts import FramePrompt, prompts_for_frames
from framefarm.animation.seeds import frame_seeds
from framefarm.errors import InputError

# ``job`` is typed Any here, not AnyJob: the job models (framefarm.job.schema) call into this module while they
# validate, so even a type-only import of them would close an import cycle.

__all__ = ["check_parseq_lengths", "job_prompts", "job_seeds", "parseq_values"]


def check_parseq_lengths(job: Any) -> None:
    """Every series of the job's ``[parseq]`` table has one value per frame."""
    parseq = getattr(job, "parseq", None)
    if parseq is None:
        return
    for name, length in parseq.series_lengths().items():
        if length != job.frames:
            raise InputError(f"parseq.{name}", f"{length} values", f"has {length} values but the job has "
                             f"{job.frames} frames", "Give one value per frame, or read the series from the manifest "
                             "again (parseq.manifest = \"file.json\")")


def parseq_values(job: Any) -> dict[str, tuple[str, np.ndarray]]:
    """Plan value name → (field, per-frame float64 array) for every numeric series of the job's Parseq table."""
    parseq = getattr(job, "parseq", None)
    if parseq is None:
        return {}
    check_parseq_lengths(job)
    from framefarm.animation.parseq import PARSEQ_FIELDS

    keys = {spec.value: spec.job for spec in PARSEQ_FIELDS if spec.value is not None}
    return {name: (f"parseq.{keys[name]}", np.asarray(series, dtype=np.float64))
            for name, series in parseq.value_series().items()}


def job_prompts(job: Any) -> list[FramePrompt]:
    """Each frame's prompt pair: the Parseq table's per-frame prompts when it has them, else the prompt schedule."""
    parseq = getattr(job, "parseq", None)
    if parseq is not None and parseq.prompts is not None:
        check_parseq_lengths(job)
        # One key per frame: each frame's text is split at --neg and its backtick math evaluated at that frame.
        prompts: dict[str, str] = {str(frame): text for frame, text in enumerate(parseq.prompts)}
        field = "parseq.prompts"
    else:
        prompts, field = job.prompts, "prompts"
    return prompts_for_frames(prompts, frames=job.frames, positive=job.positive_prompt,
                              negative=job.negative_prompt, seed=job.seed, field=field)


def job_seeds(job: Any, diffused: Sequence[bool]) -> np.ndarray:
    """Each frame's seed: the seed policy, with a Parseq seed series as the schedule when the job has one."""
    parseq = getattr(job, "parseq", None)
    series = parseq.seed if parseq is not None else None
    if series is not None:
        check_parseq_lengths(job)
    return frame_seeds(job.seed, frames=job.frames, behavior=job.seeds.behavior, iter_n=job.seeds.iter_n,
                       seed_schedule=job.seeds.schedule, diffused=diffused, scheduled=series)
