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
        # The diffusers backend is built by the model-library work (offline SD1.5/SDXL loading). Until it lands,
        # say so plainly instead of rendering something that only looks like a result.
        raise InputError("--backend", backend, "is not available in this build yet",
                         "Use --backend preview (weight-free camera-motion preview)")
    raise InputError("--backend", backend, "is not a renderer", f"Use one of: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "RenderContext", "Renderer", "get_renderer"]
