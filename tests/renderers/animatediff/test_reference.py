"""framefarm's own AnimateDiff denoising loop against diffusers' AnimateDiffPipeline, the library that defines the
right answer: same tiny SD1.5 folder, same motion module, same starting noise, one context window."""

from __future__ import annotations

import numpy as np

from tests.renderers.animatediff.conftest import ad_job


def test_one_window_clip_is_diffusers_own_animatediff_clip(models_dir, motion_models, tiny_library):
    """A clip of exactly one context window is what ``AnimateDiffPipeline`` renders from the same initial latents
    (each frame's noise from its own seed, as framefarm draws it), within the VAE-slice rounding (a level of 255)."""
    import torch
    from diffusers import AnimateDiffPipeline, EulerDiscreteScheduler, MotionAdapter

    from framefarm.animation.plan import plan_job
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.kinds.animatediff.clip import frame_noise
    from framefarm.renderers.diffusers.kinds.animatediff.renderer import clear_segment_cache
    from framefarm.renderers.diffusers.kinds.animatediff.renderer import render as render_animatediff
    from framefarm.renderers.diffusers.renderer import DiffusersRenderer

    job = ad_job(models_dir, "frames=8", 'negative_prompt="blurry"')
    chunk = plan_job(job, renderer=DiffusersRenderer().id, chunk_size=8).chunks[0]
    clear_segment_cache()
    ours = dict(render_animatediff(chunk, list(chunk.frames), RenderContext.for_job(job)))

    pipe = AnimateDiffPipeline.from_pretrained(
        str(tiny_library.sd15_diffusers), motion_adapter=MotionAdapter.from_pretrained(str(motion_models["diffusers"])),
        dtype=torch.float32, local_files_only=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    noise = torch.stack([frame_noise(int(seed), (4, 8, 8))[1] for seed in chunk.seeds])  # [F, C, h, w]
    clip = pipe("a red fox", negative_prompt="blurry", num_frames=8, height=64, width=64,
                num_inference_steps=job.model.steps, guidance_scale=job.model.cfg_scale,
                latents=noise.permute(1, 0, 2, 3)[None], output_type="np").frames[0]
    reference = (np.asarray(clip) * 255).round().astype(int)
    assert len(set(int(s) for s in chunk.seeds)) == 8  # every frame its own noise
    for frame in range(8):
        diff = np.abs(ours[frame].astype(int) - reference[frame])
        assert diff.max() <= 2 and diff.mean() < 0.3, (frame, diff.max(), diff.mean())
    assert not np.array_equal(ours[0], ours[7])
