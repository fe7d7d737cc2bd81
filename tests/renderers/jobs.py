"""Job builders shared by the renderer tests."""

from __future__ import annotations


def v2v_job(models_dir: str, *extra: str, frames: int = 8, controlnet: bool = True, checkpoint: str = "tiny-sd15"):
    """A small video2video job over the built-in test card, rendered by the tiny models (64×64, 2 steps)."""
    from framefarm.job import job_from_preset

    overrides = [
        f'model.models_dir="{models_dir}"', f'model.checkpoint="{checkpoint}"', "model.steps=2",
        'model.sampler="Euler a"', "width=64", "height=64", f"frames={frames}", "fps=8", "batch_size=4",
        'prompts.0="a watercolor cat"',
    ]
    if controlnet:
        overrides.append('controlnet.0.model="tiny-canny"')
    else:
        overrides.append("controlnet=[]")
    return job_from_preset("video-restyle", overrides + list(extra))
