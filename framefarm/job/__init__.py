"""The render job, one module per job: :mod:`~framefarm.job.schema` (the pydantic models: a new field goes there),
:mod:`~framefarm.job.loading` (job files, presets, validation), :mod:`~framefarm.job.overrides` (``--set a.b=value``)
and :mod:`~framefarm.job.validation_errors` (one readable message from a pydantic error).

Everything is re-exported here, so ``from framefarm.job import load_job, DeforumJob`` reads the same as before the
split; code inside the package imports the submodule itself (no edge back to this ``__init__``).
"""

from __future__ import annotations

from framefarm.job.loading import (
    WHOLE_TABLES,
    deep_merge,
    job_from_preset,
    load_job,
    merge_over_preset,
    read_job_file,
    resolve_job_dict,
    validate_job,
)
from framefarm.job.overrides import apply_override, parse_override
from framefarm.job.schema import (
    JOB_NAME_PATTERN,
    KINDS,
    AnimateDiffJob,
    AnimateDiffSettings,
    AntiBlur,
    AnyJob,
    ColorCoherence,
    ControlNetUnit,
    DeforumJob,
    DepthWarp,
    FarmSettings,
    HybridVideo,
    JobSpec,
    Kind,
    ModelRefs,
    Motion,
    MotionLora,
    Output,
    ParseqTable,
    PerspectiveFlip,
    SeedPolicy,
    Shot,
    Source,
    Variation,
    Video2VideoJob,
    random_seed,
    read_parseq_table,
)
from framefarm.job.validation_errors import format_validation_error

__all__ = [
    "JOB_NAME_PATTERN", "KINDS", "WHOLE_TABLES", "AnimateDiffJob", "AnimateDiffSettings", "AntiBlur", "AnyJob",
    "ColorCoherence", "ControlNetUnit", "DeforumJob", "DepthWarp", "FarmSettings", "HybridVideo", "JobSpec", "Kind",
    "ModelRefs", "Motion", "MotionLora", "Output", "ParseqTable", "PerspectiveFlip", "SeedPolicy", "Shot", "Source",
    "Variation", "Video2VideoJob", "apply_override", "deep_merge", "format_validation_error", "job_from_preset",
    "load_job", "merge_over_preset", "parse_override", "random_seed", "read_job_file", "read_parseq_table",
    "resolve_job_dict", "validate_job",
]
