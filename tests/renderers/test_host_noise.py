"""The pinned-noise scope: diffusers' own noise values, diffusers' own function outside the scope."""

from __future__ import annotations

import importlib

import torch
from diffusers.utils.torch_utils import randn_tensor as diffusers_randn

from framefarm.renderers.diffusers import host_noise

EULER = "diffusers.schedulers.scheduling_euler_discrete"
IMG2IMG = "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img"


def _generators(seeds):
    return [torch.Generator("cpu").manual_seed(s) for s in seeds]


def test_same_values_as_diffusers_for_every_generator_form():
    shape = (3, 4, 8, 8)
    for make in (lambda: _generators([1, 2, 3]), lambda: torch.Generator("cpu").manual_seed(7), lambda: None):
        if make() is None:
            torch.manual_seed(5)
            ours = host_noise.randn_tensor(shape, device=torch.device("cpu"), dtype=torch.float16)
            torch.manual_seed(5)
            theirs = diffusers_randn(shape, device=torch.device("cpu"), dtype=torch.float16)
        else:
            ours = host_noise.randn_tensor(shape, generator=make(), device="cpu", dtype=torch.float16)
            theirs = diffusers_randn(shape, generator=make(), device=torch.device("cpu"), dtype=torch.float16)
        assert ours.dtype == theirs.dtype == torch.float16
        assert torch.equal(ours, theirs)


def test_scope_swaps_diffusers_modules_and_restores_them_nested():
    euler, img2img = importlib.import_module(EULER), importlib.import_module(IMG2IMG)
    assert euler.randn_tensor is diffusers_randn
    with host_noise.pinned_noise():
        assert euler.randn_tensor is host_noise.randn_tensor
        assert img2img.randn_tensor is host_noise.randn_tensor
        with host_noise.pinned_noise():
            assert euler.randn_tensor is host_noise.randn_tensor
        assert euler.randn_tensor is host_noise.randn_tensor  # the inner scope leaves the outer one's swap
    assert euler.randn_tensor is diffusers_randn
    assert img2img.randn_tensor is diffusers_randn


def test_scope_restores_after_an_error_and_can_be_switched_off():
    euler = importlib.import_module(EULER)
    try:
        with host_noise.pinned_noise():
            raise RuntimeError("a failing pipeline call")
    except RuntimeError:
        pass
    assert euler.randn_tensor is diffusers_randn
    host_noise.ENABLED = False
    try:
        with host_noise.pinned_noise():
            assert euler.randn_tensor is diffusers_randn
    finally:
        host_noise.ENABLED = True


def test_euler_steps_draw_the_same_noise_inside_the_scope():
    """A scheduler step inside the scope gives diffusers' result (the noise is drawn on the CPU either way)."""
    from diffusers import EulerAncestralDiscreteScheduler

    def steps(scoped: bool):
        scheduler = EulerAncestralDiscreteScheduler()
        scheduler.set_timesteps(4)
        sample = torch.ones(2, 4, 8, 8)
        generators = _generators([3, 4])
        for t in scheduler.timesteps:
            if scoped:
                with host_noise.pinned_noise():
                    sample = scheduler.step(sample * 0.1, t, sample, generator=generators).prev_sample
            else:
                sample = scheduler.step(sample * 0.1, t, sample, generator=generators).prev_sample
        return sample

    assert torch.equal(steps(True), steps(False))
