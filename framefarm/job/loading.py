"""Loading a job: file → dict → preset merge → ``--set`` overrides → validated spec.

A job file is TOML (JSON accepted). It may name a shipped preset (``preset = "zoom-tunnel"``): the preset is the
base and every field in the file overrides it, table by table field by field, except ``[prompts]``, which replaces
the preset's prompts whole; ``--set a.b=value`` on the command line overrides both, one field (or prompt) at a time.

Validation errors are turned into one readable :class:`~framefarm.errors.InputError` naming every bad field,
its value and what is allowed (see :func:`framefarm.job.validation_errors.format_validation_error`).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from framefarm.errors import InputError
from framefarm.job.overrides import apply_override, parse_override
from framefarm.job.schema import _JOB_ADAPTER, KINDS, AnyJob
from framefarm.job.validation_errors import format_validation_error


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


# Tables a job gives whole when it names a preset. Prompts are one timeline: merged key by key, a preset's keyframe
# at frame 48 would take over from the job's own prompt there, which nobody writing `[prompts]` means. Every other
# table (motion schedules, model, output …) merges field by field.
WHOLE_TABLES: tuple[str, ...] = ("prompts",)


def merge_over_preset(preset: Mapping[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """``job`` over ``preset``: tables merge field by field (:func:`deep_merge`), except :data:`WHOLE_TABLES`, which
    the job's own table replaces as a whole."""
    merged = deep_merge(preset, job)
    for key in WHOLE_TABLES:
        if key in job:
            merged[key] = job[key]
    return merged


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
        data = merge_over_preset(load_preset(str(preset_name)), data)
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
    parseq = data.get("parseq")
    if isinstance(parseq, Mapping) and isinstance(parseq.get("manifest"), str):
        # A manifest path in a job file is relative to the job file, like the file's own neighbours.
        manifest = parseq["manifest"].strip()
        if manifest and not manifest.startswith(("http", "{")) and not Path(manifest).is_absolute():
            data["parseq"] = {**parseq, "manifest": str(Path(path).parent / manifest)}
    if "name" not in data:  # a job file's own name is the natural default
        data["name"] = re.sub(r"[^A-Za-z0-9._-]", "-", Path(path).stem).lstrip("._-") or "job"
    return validate_job(data, source=str(path))


def job_from_preset(name: str, overrides: list[str] | tuple[str, ...] = ()) -> AnyJob:
    """A job that is just a preset (plus overrides): what ``framefarm demo`` renders."""
    return validate_job(resolve_job_dict({"preset": name}, overrides), source=f"preset {name!r}")
