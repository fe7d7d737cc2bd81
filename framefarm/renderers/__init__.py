"""Renderers turn a chunk of a plan into frames. ``get_renderer(name)`` picks one by its backend name."""

from __future__ import annotations

from framefarm.errors import InputError
from framefarm.renderers.base import RenderContext, Renderer

BACKENDS = ("preview", "diffusers")


def get_renderer(backend: str) -> Renderer:
    """The renderer for a backend name (``preview`` or ``diffusers``)."""
    if backend == "preview":
        from framefarm.renderers.preview import PreviewRenderer

        return PreviewRenderer()
    if backend == "diffusers":
        # SD1.5/SDXL from the user's own model files, offline (framefarm/renderers/diffusers/). Importing it
        # imports neither torch nor diffusers: models load on the first render.
        from framefarm.renderers.diffusers.renderer import DiffusersRenderer

        return DiffusersRenderer()
    if backend == "simulated":  # fixed seconds per frame, tiny frames: benchmarks of the farm's control plane
        from framefarm.renderers.simulated import SimulatedGpuRenderer

        return SimulatedGpuRenderer()
    # A studio's package may register more backends under the framefarm.renderers entry-point group.
    from framefarm.renderers.models.plugins import find_renderer, renderer_names

    plugin = find_renderer(backend)
    if plugin is not None:
        return plugin
    names = sorted(set(BACKENDS) | set(renderer_names()))
    raise InputError("--backend", backend, "is not a renderer", f"Use one of: {', '.join(names)}")


__all__ = ["BACKENDS", "RenderContext", "Renderer", "get_renderer"]
