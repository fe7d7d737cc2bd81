"""Motion modules in both layouts, motion LoRAs (attached and checked), motion scale."""

from __future__ import annotations

import numpy as np
import pytest

from framefarm.errors import InputError
from tests.renderers.animatediff.conftest import ad_job


def _clip(job) -> list[np.ndarray]:
    from framefarm.animation.plan import plan_job
    from framefarm.renderers.diffusers.kinds.animatediff import renderer
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.renderer import DiffusersRenderer

    renderer.clear_segment_cache()
    plan = plan_job(job, renderer=DiffusersRenderer().id)
    frames = dict(renderer.render(plan.chunks[0], list(range(job.frames)), RenderContext.for_job(job)))
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

    from framefarm.renderers.diffusers.kinds.animatediff.clip import freeinit_mix

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


def test_single_files_pick_their_skeleton_and_read_shapes_from_the_file():
    import torch

    from framefarm.renderers.models.motion import single_file_config

    def state(blocks: int, channels: int, mid: bool) -> dict:
        out = {f"down_blocks.{b}.motion_modules.{m}.temporal_transformer.proj_in.weight": torch.zeros(channels, 1)
               for b in range(blocks) for m in range(2)}
        out["down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0"
            ".pos_encoder.pe"] = torch.zeros(1, 24, channels)
        if mid:
            out["mid_block.motion_modules.0.temporal_transformer.norm.bias"] = torch.zeros(channels)
        return out

    v2, version = single_file_config(state(4, 320, mid=True), "SD1.5")
    assert version == "v2" and v2["use_motion_mid_block"] and v2["motion_max_seq_length"] == 24
    assert v2["block_out_channels"] == [320] * 4 and v2["motion_layers_per_block"] == 2
    v3, version = single_file_config(state(4, 320, mid=False), "SD1.5")
    assert version == "v3" and not v3["use_motion_mid_block"] and v3["motion_num_attention_heads"] == 8
    xl, version = single_file_config(state(3, 320, mid=False), "SDXL")
    assert version == "sdxl-beta" and len(xl["block_out_channels"]) == 3
