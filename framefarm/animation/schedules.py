"""Evaluate every schedule a job carries, with each schedule's dotted field name in its errors."""

from __future__ import annotations

from typing import Any

import numpy as np

from framefarm.animation.keyframes import parse_schedule


def evaluate_job_schedules(job: Any) -> dict[str, np.ndarray]:
    """Per-frame values of the job's motion schedules and ControlNet weight schedules.

    Args:
        job: a validated job spec (any kind); duck-typed so this module needs no pydantic.

    Returns:
        ``{"zoom": array, ..., "controlnet.0.weight": array}``, each float64 of length ``job.frames``.

    Raises:
        InputError: naming the field (``motion.zoom``), the schedule text and the fix.
    """
    values: dict[str, np.ndarray] = {}
    for name, text in job.motion.schedules().items():
        values[name] = parse_schedule(
            text, frames=job.frames, field=f"motion.{name}", seed=job.seed, interpolation=job.motion.interpolation
        )
    for i, unit in enumerate(job.controlnet):
        if unit.weight_schedule is not None:
            values[f"controlnet.{i}.weight"] = parse_schedule(
                unit.weight_schedule, frames=job.frames, field=f"controlnet.{i}.weight_schedule", seed=job.seed,
                interpolation=job.motion.interpolation,
            )
    return values
