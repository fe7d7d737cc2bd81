"""Motion modules in both layouts, motion LoRAs (attached and checked), motion scale."""

from __future__ import annotations

import numpy as np
import pytest

from framefarm.errors import InputError
from tests.renderers.animatediff.conftest import ad_job


def _clip(job) -> list[np.ndarray]:
    from framefarm.animation.plan import plan_job
    from framefarm.renderers.animatediff import renderer
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers_image import DiffusersRenderer

    renderer._latents.clear()
    plan = plan_job(job, renderer=DiffusersRenderer().id)
    frames = dict(renderer.render_animatediff(plan.chunks[0], list(range(job.frames)), RenderContext(job=job)))
    return [frames[i].astype(np.float64) for i in range(job.frames)]


def _diff(a, b) -> float:
    return float(np.mean([np.abs(x - y).mean() for x, y in zip(a, b)]))


def test_single_file_module_matches_its_diffusers_folder_and_lora_and_scale_change_the_clip(models_dir,
                                                                                             motion_models):
    base = ["frames=8", "model.cfg_scale=1.0"]
    folder = _clip(ad_job(models_dir, *base))
    single = _clip(ad_job(models_dir, *base, module="tiny-mm-v2"))
    assert _diff(folder, single) < 0.5  # same weights, converted from the original layout

    lora = _clip(ad_job(models_dir, *base, 'animatediff.motion_loras=[{name="tiny-motion-lora", weight=1.0}]'))
    still = _clip(ad_job(models_dir, *base, "animatediff.motion_scale=0.0"))
    print(f"mean |Δ| vs plain: LoRA {_diff(folder, lora):.2f}, motion scale 0 {_diff(folder, still):.2f}")
    assert _diff(folder, lora) > 1.0
    assert _diff(folder, still) > 1.0


def test_a_motion_lora_for_another_module_version_is_refused_by_name(models_dir, motion_models):
    job = ad_job(models_dir, "frames=4", 'animatediff.motion_loras=[{name="tiny-motion-lora-wrong"}]')
    with pytest.raises(InputError, match=r"animatediff.motion_loras: was made for another motion-module "
                                         r"version.*diffusers \(4 blocks.*got 'tiny-motion-lora-wrong"):
        _clip(job)


def test_a_file_that_attaches_nothing_is_an_error():
    from framefarm.renderers.models.motion import MotionInfo, fuse_motion_loras

    info = MotionInfo("v2", (320,), True, 32)
    with pytest.raises(InputError, match="attaches to nothing"):
        fuse_motion_loras(object.__new__(type("U", (), {"named_modules": lambda self: []})),
                          [("empty", {"lora_unet_x.lora_down.weight": np.zeros(1)}, 1.0)], info)


def test_freeinit_keeps_the_low_frequencies_and_changes_the_clip(models_dir, motion_models):
    import torch

    from framefarm.renderers.animatediff.clip import freeinit_mix

    a, b = torch.randn(8, 4, 8, 8), torch.randn(8, 4, 8, 8)
    mixed = freeinit_mix(a, b, 0.25)
    assert torch.allclose(mixed.mean(dim=(0, 2, 3)), a.mean(dim=(0, 2, 3)), atol=1e-4)  # DC term from ``a``
    # Cut-off ~0: everything but the DC term (each channel's mean) comes from ``b``.
    dc = (a - b).mean(dim=(0, 2, 3), keepdim=True)
    assert torch.allclose(freeinit_mix(a, b, 1e-6), b + dc, atol=1e-4)

    base = ["frames=8", "model.cfg_scale=1.0"]
    plain = _clip(ad_job(models_dir, *base))
    again = _clip(ad_job(models_dir, *base, "animatediff.freeinit_iterations=1"))
    assert _diff(plain, again) > 1.0


def test_sdxl_clip_renders_and_a_module_for_the_other_family_is_refused(models_dir, motion_models):
    sdxl = _clip(ad_job(models_dir, "frames=6", "model.checkpoint=\"tiny-sdxl\"", 'prompts.3="a blue bird"',
                        module="tiny-motion-sdxl"))
    assert len(sdxl) == 6 and _diff(sdxl[:1], sdxl[5:]) > 0.1
    with pytest.raises(InputError, match=r"animatediff.motion_module: is an SDXL motion module but the checkpoint "
                                         r"is SD1.5 \(got 'tiny-motion-sdxl'\)\. Use an SD1.5 motion module"):
        _clip(ad_job(models_dir, "frames=4", module="tiny-motion-sdxl"))
