"""Shipped presets: TOML job fragments a job file names with ``preset = "name"`` and overrides field by field
(its ``[prompts]`` table as a whole: :func:`framefarm.job.merge_over_preset`).

Presets are data, not code: add one by dropping a ``<name>.toml`` file into this folder.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from framefarm.errors import InputError


def preset_names() -> list[str]:
    """Names of every shipped preset, sorted."""
    folder = resources.files(__package__)
    return sorted(entry.name.removesuffix(".toml") for entry in folder.iterdir() if entry.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's fields as a dict (without its ``[preset]`` info table)."""
    names = preset_names()
    if name not in names:
        raise InputError("preset", name, "is not a shipped preset", f"Use one of: {', '.join(names)}")
    data = tomllib.loads(resources.files(__package__).joinpath(f"{name}.toml").read_text(encoding="utf-8"))
    data.pop("preset_info", None)
    return data


def preset_summary(name: str) -> dict[str, Any]:
    """Name, kind, size, length and one-line description of a preset, for ``framefarm presets``."""
    data = load_preset(name)
    fps = float(data.get("fps", 24))
    frames = int(data.get("frames", 48))
    return {
        "name": name,
        "kind": data.get("kind", "?"),
        "size": f"{data.get('width', 512)}x{data.get('height', 512)}",
        "fps": fps,
        "frames": frames,
        "seconds": round(frames / fps, 2),
        "description": data.get("description", ""),
    }
