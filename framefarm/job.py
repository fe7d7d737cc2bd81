"""The render job: a frozen, validated, serialisable description of one animation.

A job file is TOML (JSON accepted). It may name a shipped preset (``preset = "zoom-tunnel"``): the preset is the
base and every field in the file overrides it; ``--set a.b=value`` on the command line overrides both.

Three kinds share the common fields and add their own:

* ``deforum``      — keyframe animation: each frame is img2img of the warped previous frame.
* ``animatediff``  — motion-module clips in 16-frame context windows.
* ``video2video``  — img2img frame batches over a source video.

Validation errors are turned into one readable :class:`~framefarm.errors.InputError` naming every bad field,
its value and what is allowed (see :func:`format_validation_error`).
"""

from __future__ import annotations

import json
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from framefarm.errors import InputError

# Job names become folder names under the output root: keep them to a safe, portable alphabet so a name can never
# climb out of its root ("../x") or collide on case-insensitive file systems in surprising ways.
JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"

Kind = Literal["deforum", "animatediff", "video2video"]
KINDS: tuple[str, ...] = ("deforum", "animatediff", "video2video")


class _Spec(BaseModel):
    """Shared config: frozen (hashable, safe to pass between tasks) and strict about unknown keys (typos)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class ModelRefs(_Spec):
    """Which weights and sampler render the frames. Paths are relative to the models folder (or absolute)."""

    checkpoint: str | None = None
    vae: str | None = None
    sampler: str = "Euler a"
    steps: Annotated[int, Field(ge=1, le=500)] = 20
    cfg_scale: Annotated[float, Field(ge=0.0, le=50.0)] = 7.0
    clip_skip: Annotated[int, Field(ge=1, le=12)] = 1


class ControlNetUnit(_Spec):
    """One ControlNet unit: a model, the preprocessor that makes its control image, and how strongly it guides."""

    model: str
    preprocessor: str = "none"
    weight: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    guidance_start: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    guidance_end: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    weight_schedule: str | None = None
    image: str | None = None

    @model_validator(mode="after")
    def _start_before_end(self) -> ControlNetUnit:
        if self.guidance_start > self.guidance_end:
            raise ValueError(
                f"guidance_start ({self.guidance_start}) must not be after guidance_end ({self.guidance_end})"
            )
        return self


class Motion(_Spec):
    """Deforum keyframe schedules (``"0:(1.0), 60:(1.04*sin(t/8))"``), evaluated per frame.

    The camera fields drive the 2D warp of every kind's preview and of the Deforum chain; strength, noise, contrast
    and cfg drive img2img. ``interpolation`` fills frames between keyframes, as Deforum's option of that name.
    """

    zoom: str = "0:(1.0)"
    angle: str = "0:(0)"
    translation_x: str = "0:(0)"
    translation_y: str = "0:(0)"
    transform_center_x: str = "0:(0.5)"
    transform_center_y: str = "0:(0.5)"
    strength: str = "0:(0.65)"
    noise: str = "0:(0.02)"
    contrast: str = "0:(1.0)"
    cfg_scale: str | None = None
    border: Literal["replicate", "wrap"] = "replicate"
    interpolation: Literal["linear", "quadratic", "cubic"] = "linear"

    def schedules(self) -> dict[str, str]:
        """The numeric schedules by name (cfg_scale only when set)."""
        names = ("zoom", "angle", "translation_x", "translation_y", "transform_center_x", "transform_center_y",
                 "strength", "noise", "contrast", "cfg_scale")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class SeedPolicy(_Spec):
    """How the seed moves from frame to frame (Deforum's ``seed_behavior``)."""

    behavior: Literal["iter", "fixed", "random", "ladder", "alternate", "schedule"] = "iter"
    iter_n: Annotated[int, Field(ge=1)] = 1
    schedule: str | None = None


class Output(_Spec):
    """What the finishing stage writes."""

    codec: Literal["h264"] = "h264"
    crf: Annotated[int, Field(ge=0, le=51)] = 18
    encoder_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "veryfast"
    loop: bool = False


class Source(_Spec):
    """A source video for video-to-video: a file ffmpeg reads, a folder of frames, or ``"testcard"``.

    ``"testcard"`` is a built-in moving test pattern, so presets and CI need no media file.
    """

    video: str
    start_frame: Annotated[int, Field(ge=0)] = 0


class AnimateDiffSettings(_Spec):
    """Motion-module settings: context windows of ``context_length`` frames overlapping by ``context_overlap``."""

    motion_module: str | None = None
    context_length: Annotated[int, Field(ge=1, le=64)] = 16
    context_overlap: Annotated[int, Field(ge=0, le=63)] = 4
    loop: bool = False
    motion_scale: Annotated[float, Field(ge=0.0, le=3.0)] = 1.0

    @model_validator(mode="after")
    def _overlap_below_length(self) -> AnimateDiffSettings:
        if self.context_overlap >= self.context_length:
            raise ValueError(
                f"context_overlap ({self.context_overlap}) must be smaller than context_length "
                f"({self.context_length})"
            )
        return self


class _JobBase(_Spec):
    """Fields every kind of job has."""

    name: Annotated[str, Field(pattern=JOB_NAME_PATTERN)]
    description: str = ""
    width: Annotated[int, Field(ge=64, le=8192, multiple_of=8)] = 512
    height: Annotated[int, Field(ge=64, le=8192, multiple_of=8)] = 512
    fps: Annotated[float, Field(gt=0, le=240)] = 24.0
    frames: Annotated[int, Field(ge=1, le=1_000_000)] = 48
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 42
    prompts: dict[str, str] = Field(default_factory=lambda: {"0": "a test card"})
    positive_prompt: str = ""
    negative_prompt: str = ""
    init_image: str | None = None
    model: ModelRefs = ModelRefs()
    controlnet: tuple[ControlNetUnit, ...] = ()
    motion: Motion = Motion()
    seeds: SeedPolicy = SeedPolicy()
    output: Output = Output()

    @field_validator("prompts")
    @classmethod
    def _prompts_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError('at least one prompt is needed, e.g. prompts = { 0 = "a neon tunnel" }')
        return value

    @model_validator(mode="after")
    def _schedules_evaluate(self) -> _JobBase:
        # Evaluate every schedule once now, so a typo in frame 3 000's expression is reported before any GPU
        # time is spent. The planner evaluates them again; parsing is cheap next to rendering.
        from framefarm.animation.schedules import evaluate_job_schedules

        evaluate_job_schedules(self)
        return self


class DeforumJob(_JobBase):
    """Keyframe animation: every ``cadence``-th frame is diffused from the warped previous one."""

    kind: Literal["deforum"]
    cadence: Annotated[int, Field(ge=1, le=50)] = 1


class AnimateDiffJob(_JobBase):
    """Motion-module clip."""

    kind: Literal["animatediff"]
    animatediff: AnimateDiffSettings = AnimateDiffSettings()


class Video2VideoJob(_JobBase):
    """Each source frame re-rendered (img2img + ControlNet from that frame)."""

    kind: Literal["video2video"]
    source: Source
    batch_size: Annotated[int, Field(ge=1, le=256)] = 4


JobSpec = Annotated[Union[DeforumJob, AnimateDiffJob, Video2VideoJob], Field(discriminator="kind")]
_JOB_ADAPTER: TypeAdapter[DeforumJob | AnimateDiffJob | Video2VideoJob] = TypeAdapter(JobSpec)
AnyJob = DeforumJob | AnimateDiffJob | Video2VideoJob


# ----------------------------------------------------------------------------------------------------------------
# Loading: file → dict → preset merge → overrides → validated spec


def read_job_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (or JSON) job file into a plain dict. Errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("job file", str(path), "no such file", "Pass the path of a .toml or .json job file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InputError("job file", str(path), f"is not valid {path.suffix.lstrip('.').upper() or 'TOML'}: {exc}",
                         "Fix the syntax at the position shown") from None
    if not isinstance(data, dict):
        raise InputError("job file", str(path), "must hold a table of fields at the top level")
    return data


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` over ``base``: tables merge key by key, everything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """Split ``"motion.zoom=0:(1.02)"`` into a path and a value.

    The value is read as a TOML value when it is one (``24`` → int, ``true`` → bool, ``"text"`` → str,
    ``[1, 2]`` → list) and taken as a plain string otherwise, so ``--set prompts.0=a red fox`` needs no quotes.
    """
    if "=" not in assignment:
        raise InputError("--set", assignment, "must look like key=value", "Example: --set frames=24")
    key, _, raw = assignment.partition("=")
    path = [part for part in key.strip().split(".")]
    if not all(part.strip() for part in path):
        raise InputError("--set", assignment, "has an empty field name", "Example: --set motion.zoom=0:(1.02)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return [part.strip() for part in path], value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """Return a copy of ``data`` with ``value`` set at the dotted ``path`` (list items by index)."""
    data = dict(data)
    head, rest = path[0], path[1:]
    if not rest:
        data[head] = value
        return data
    child = data.get(head, {})
    if isinstance(child, list):
        try:
            index = int(rest[0])
            item = child[index]
        except (ValueError, IndexError):
            raise InputError("--set", ".".join(path), f"{head!r} has {len(child)} item(s)",
                             f"Use an index from 0 to {len(child) - 1}") from None
        child = list(child)
        child[index] = apply_override(item, rest[1:], value) if rest[1:] else value
        data[head] = child
    elif isinstance(child, Mapping):
        data[head] = apply_override(dict(child), rest, value)
    else:
        raise InputError("--set", ".".join(path), f"{head!r} is not a table", "Set the field itself instead")
    return data


def resolve_job_dict(data: Mapping[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Merge the named preset under ``data`` and apply ``key=value`` overrides on top."""
    from framefarm.presets import load_preset

    data = dict(data)
    preset_name = data.pop("preset", None)
    for assignment in overrides:  # an override may itself pick the preset
        path, value = parse_override(assignment)
        if path == ["preset"]:
            preset_name = value
    if preset_name is not None:
        data = deep_merge(load_preset(str(preset_name)), data)
    for assignment in overrides:
        path, value = parse_override(assignment)
        if path != ["preset"]:
            data = apply_override(data, path, value)
    # TOML tables give string keys already; JSON users may write prompts with integer-looking keys as numbers.
    if isinstance(data.get("prompts"), Mapping):
        data["prompts"] = {str(k): v for k, v in data["prompts"].items()}
    return data


def validate_job(data: Mapping[str, Any], *, source: str = "job") -> AnyJob:
    """Validate a job dict into a spec, or raise one readable :class:`InputError` listing every problem."""
    if "kind" not in data:
        raise InputError("kind", problem="is missing", fix=f"Add kind = one of {', '.join(KINDS)}")
    if data["kind"] not in KINDS:
        raise InputError("kind", data["kind"], "is not a job kind", f"Use one of: {', '.join(KINDS)}")
    try:
        return _JOB_ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        raise InputError(source, problem=format_validation_error(exc)) from None


def load_job(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> AnyJob:
    """Read, merge and validate a job file (see the module docstring)."""
    data = resolve_job_dict(read_job_file(path), overrides)
    if "name" not in data:  # a job file's own name is the natural default
        data["name"] = re.sub(r"[^A-Za-z0-9._-]", "-", Path(path).stem).lstrip("._-") or "job"
    return validate_job(data, source=str(path))


def job_from_preset(name: str, overrides: list[str] | tuple[str, ...] = ()) -> AnyJob:
    """A job that is just a preset (plus overrides): what ``framefarm demo`` renders."""
    return validate_job(resolve_job_dict({"preset": name}, overrides), source=f"preset {name!r}")


def random_seed() -> int:
    """A fresh seed for users who ask for one (``--seed random``); recorded in the manifest like any other."""
    return secrets.randbelow(2**32)


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field.path: message (got value)``; the job-kind prefix pydantic adds is dropped."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        if loc and loc[0] in KINDS:  # discriminated-union tag, not part of the user's field path
            loc = loc[1:]
        field = ".".join(loc) or "job"
        message = error["msg"]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, InputError):  # raised by our own validators: already names field, value and fix
            lines.append(str(cause))
            continue
        if error["type"] == "extra_forbidden":
            message = "is not a known field (a typo?)"
        elif error["type"] == "missing":
            message = "is required"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if error["type"] == "missing":
            lines.append(f"{field}: {message}")
        else:
            shown = repr(error.get("input"))
            if len(shown) > 80:
                shown = shown[:77] + "..."
            lines.append(f"{field}: {message} (got {shown})")
    count = len(lines)
    header = "1 problem" if count == 1 else f"{count} problems"
    return f"{header}:\n  " + "\n  ".join(lines)
