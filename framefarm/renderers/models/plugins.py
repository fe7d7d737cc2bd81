"""Renderers from the ``framefarm.renderers`` entry-point group, so a studio's package can add a backend.

framefarm's own ``pyproject.toml`` registers ``preview`` and ``diffusers`` in the same group. ``get_renderer`` keeps
its explicit branches for the built-ins and can ask :func:`find_renderer` for any other name.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from framefarm.errors import RenderError

ENTRY_POINT_GROUP = "framefarm.renderers"


def renderer_names() -> list[str]:
    return sorted({point.name for point in entry_points(group=ENTRY_POINT_GROUP)})


def find_renderer(name: str) -> Any | None:
    """A new instance of the renderer registered as ``name``, or None when no package registers that name."""
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name == name:
            try:
                return point.load()()
            except Exception as exc:  # noqa: BLE001 - a broken plug-in: say which one, whatever it raised
                raise RenderError(f"renderer plug-in {name!r} ({point.value}) failed to load: {exc}") from exc
    return None
