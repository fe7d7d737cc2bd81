"""``--set a.b=value`` overrides: parse one assignment and apply it to a job dict, one field (or list item) at a time."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from framefarm.errors import InputError


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
