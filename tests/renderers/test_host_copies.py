"""Copies from the host without a stream sync (framefarm.renderers.host_copies): same values as torch's and
diffusers' own paths, checked against them. The GPU-only part (pinned memory, non-blocking copies) is what the GPU
benchmark measures; here the CPU counts as a pinned target, so every code path that decides and rewrites a copy
runs, and the frames it gives are compared with diffusers' own img2img pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framefarm.renderers import host_copies
from framefarm.renderers.samplers import SAMPLER_NAMES, find_sampler, make_scheduler


@pytest.fixture
def copies(monkeypatch):
    """Host copies on, the CPU as a pinned target; returns the list of (device type, shape) each rewritten copy
    went through, so a test can tell that the rewrite happened."""
    monkeypatch.setattr(host_copies, "ENABLED", True)
    monkeypatch.setattr(host_copies, "PINNED_TARGETS", ("cuda", "cpu"))
    seen: list[tuple[str, tuple]] = []
    original = host_copies.to_device

    def spy(tensor, device):
        seen.append((torch.device(device).type, tuple(tensor.shape)))
        return original(tensor, device)

    monkeypatch.setattr(host_copies, "to_device", spy)
    return seen


def test_the_torch_function_mode_gives_torchs_values_for_every_form_of_to_and_list_indices(copies):
    source = torch.linspace(-3, 3, 12).reshape(3, 4)
    like = torch.zeros(1, dtype=torch.float16)
    cases = [
        lambda t: t.to("cpu"), lambda t: t.to(device="cpu", dtype=torch.float16), lambda t: t.to("cpu", torch.int64),
        lambda t: t.to(like), lambda t: t.to(torch.float64), lambda t: t.to("cpu", copy=True),
        lambda t: t[[2, 0]], lambda t: t[[True, False, True]], lambda t: t[1:],
    ]
    expected = [case(source) for case in cases]
    with host_copies.pinned_copies():
        got = [case(source) for case in cases]
    for want, have in zip(expected, got):
        assert have.dtype == want.dtype and torch.equal(have, want)
    # .to("cpu"), .to(device, dtype), .to("cpu", int64), .to(like) and the int list index were rewritten; a dtype-only
    # .to, copy=True (a form _parse_to refuses) and boolean or slice indices went through torch untouched.
    assert copies == [("cpu", (3, 4))] * 4 + [("cpu", (2,))]


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_keeps_diffusers_tables_and_noise_when_set_up_on_the_host(sampler, copies):
    import json
    from pathlib import Path

    import framefarm.renderers.models as models

    # The SD1.5 scheduler config framefarm ships for single-file checkpoints.
    packaged = Path(models.__file__).parent / "configs" / "sd15" / "scheduler" / "scheduler_config.json"
    config = json.loads(packaged.read_text())
    plain, ours = make_scheduler(sampler, config), host_copies.sync_free_schedule(make_scheduler(sampler, config))
    for scheduler in (plain, ours):
        scheduler.set_timesteps(7, device="cpu")
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(2 * scheduler.order)
    assert torch.equal(plain.timesteps, ours.timesteps)
    if hasattr(plain, "sigmas"):
        assert torch.equal(torch.as_tensor(plain.sigmas), torch.as_tensor(ours.sigmas))
    latents, noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.randn(2, 4, 8, 8)
    start = plain.timesteps[2 * plain.order: 2 * plain.order + 1].repeat(2)
    assert torch.equal(plain.add_noise(latents, noise, start), ours.add_noise(latents, noise, start))
    assert copies[0] == ("cpu", tuple(plain.timesteps.shape))  # the timesteps went through the host copy
    assert find_sampler(sampler).scheduler == type(ours).__name__


def test_img2img_with_host_copies_is_diffusers_own_img2img(models_dir, tiny_library, monkeypatch, copies):
    """framefarm's group call (prompt ids and scheduler set-up through host copies) against diffusers'
    StableDiffusionImg2ImgPipeline on the same folder, seed and prompt: the same frame."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline
    from PIL import Image

    from framefarm.renderers.accel import PIXEL_TOLERANCE
    from framefarm.renderers.diffusers.denoise import FrameSettings, Group
    from framefarm.renderers.testcard import source_testcard
    from tests.renderers.jobs import group_frame, v2v_job

    prompt, seed, steps, cfg, strength = "a lighthouse at dusk", 77, 4, 6.0, 0.75
    init = source_testcard(0, 64, 64, 8)
    job = v2v_job(models_dir, 'model.sampler="Euler"', frames=1, controlnet=False,
                  checkpoint="tiny-sd15-diffusers")
    group = Group(frames=[0], seeds=[seed], positives=[prompt], negatives=[""], init=[init],
                  settings=FrameSettings(strength=strength, cfg=cfg, steps=steps, sampler="Euler", clip_skip=1))
    ours = group_frame(monkeypatch, job, group)
    # Through the host copies: the prompt ids, the timesteps, add_noise's sigma table and its list index.
    assert {shape for _, shape in copies} >= {(1, 77), (steps,), (steps + 1,), (1,)}

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(str(tiny_library.sd15_diffusers), torch_dtype=torch.float32,
                                                          safety_checker=None, requires_safety_checker=False,
                                                          local_files_only=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    theirs = np.asarray(pipe(prompt, negative_prompt="", image=Image.fromarray(init), strength=strength,
                             num_inference_steps=steps, guidance_scale=cfg,
                             generator=torch.Generator("cpu").manual_seed(seed)).images[0]).astype(int)
    diff = np.abs(ours.astype(int) - theirs)
    print(f"max |framefarm with host copies − StableDiffusionImg2ImgPipeline| = {diff.max()}")
    assert ours.shape == (64, 64, 3) and diff.max() <= PIXEL_TOLERANCE


def test_animatediff_segment_set_up_through_host_copies_keeps_the_frames(models_dir, motion_models, monkeypatch,
                                                                         copies):
    """AnimateDiff's segment set-up (start latents, window indices and weights, timesteps, prompt rows) goes through
    the host copies; the clip's frames are those of plain copies."""
    from tests.renderers.animatediff.conftest import ad_job, render_clip

    job = ad_job(models_dir, "frames=12")

    pinned = render_clip(job)
    # The start latents, the frames' rows of the prompt table, and a context window's frame indices.
    assert {("cpu", (12, 4, 8, 8)), ("cpu", (12,)), ("cpu", (8,))} <= set(copies)
    monkeypatch.setattr(host_copies, "ENABLED", False)
    plain = render_clip(job)
    assert sorted(pinned) == sorted(plain) == list(range(12))
    assert all(np.array_equal(pinned[f], plain[f]) for f in plain)
