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


def group_frame(monkeypatch, job, group):
    """Frame 0 of ``group`` through framefarm's group call (``denoise_group``) from freshly loaded models with the
    speed levers off: the path compared with diffusers' own pipelines."""
    from framefarm.renderers.accel import ACCEL_ENV
    from framefarm.renderers.diffusers.components import load_components
    from framefarm.renderers.diffusers.denoise import denoise_group
    from framefarm.renderers.diffusers.vae import resolve
    from framefarm.renderers.models.loader import clear_cache

    clear_cache()
    monkeypatch.setenv(ACCEL_ENV, "none")
    try:
        return resolve(denoise_group(load_components(job), job, group))[0]
    finally:
        clear_cache()


def diffusers_controlnet_img2img(tiny_library):
    """The reference for a video2video frame: diffusers' own StableDiffusionControlNetImg2ImgPipeline on the tiny
    SD1.5 diffusers folder, with Euler, and the ControlNet built as the library's ``tiny-canny`` was (not loaded
    through framefarm's converter)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionControlNetImg2ImgPipeline, StableDiffusionPipeline

    from tests.fixtures.tiny_models import build_controlnet

    base = StableDiffusionPipeline.from_pretrained(str(tiny_library.sd15_diffusers), dtype=torch.float32,
                                                   safety_checker=None, requires_safety_checker=False,
                                                   local_files_only=True)
    pipe = StableDiffusionControlNetImg2ImgPipeline(**base.components, controlnet=build_controlnet(base.unet, seed=20))
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe
