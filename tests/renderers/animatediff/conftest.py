"""AnimateDiff job builder (the ``motion_models`` fixture lives in tests/renderers/conftest.py: the renderer
contract test needs it too)."""

from __future__ import annotations


def ad_job(models_dir: str, *extra: str, frames: int = 12, module: str = "tiny-motion-diffusers"):
    """A small AnimateDiff job for the tiny models: 64×64, 2 Euler steps, 8-frame windows."""
    from framefarm.job import validate_job

    data = {
        "name": "ad", "kind": "animatediff", "width": 64, "height": 64, "fps": 8, "frames": frames, "seed": 7,
        "prompts": {"0": "a red fox"},
        "model": {"models_dir": models_dir, "checkpoint": "tiny-sd15", "steps": 2, "sampler": "Euler",
                  "cfg_scale": 3.0},
        "animatediff": {"motion_module": module, "context_length": 8, "context_overlap": 2},
    }
    from framefarm.job import apply_override, parse_override

    for assignment in extra:
        path, value = parse_override(assignment)
        data = apply_override(data, path, value)
    return validate_job(data)


def render_clip(job, *, chunk_size: int | None = None, source=None) -> dict:
    """Every frame of ``job`` through the AnimateDiff renderer, chunk by chunk (``chunk_size``; the planner's own
    size by default), from a fresh segment cache, left empty after."""
    from framefarm.animation.plan import plan_job
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.kinds.animatediff.renderer import clear_segment_cache, render
    from framefarm.renderers.diffusers.renderer import DiffusersRenderer

    clear_segment_cache()
    try:
        plan = plan_job(job, renderer=DiffusersRenderer().id, chunk_size=chunk_size)
        frames: dict = {}
        for chunk in plan.chunks:
            frames.update(render(chunk, list(chunk.frames), RenderContext.for_job(job, source_frame=source)))
        return frames
    finally:
        clear_segment_cache()
