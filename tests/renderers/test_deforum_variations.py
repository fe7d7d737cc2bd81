"""Deforum variations on the diffusers backend with the tiny models: V chains rendered in lockstep (frame t of every
variation in one batch), each matching the same chain rendered alone as a plain job, byte-identical however the job is
chunked or resumed."""

from __future__ import annotations

import numpy as np
import pytest

from tests.renderers.test_deforum_chain import chain_frames, frame_hashes, small_job

MOTION = {"noise": "0:(0.05)", "zoom": "0:(1.05)", "angle": "0:(3)"}
VARIATIONS = [{"seed_offset": 0}, {"seed_offset": 100, "positive_prompt": "at night"}, {"seed_offset": 7}]


def variations_job(models_dir: str, **fields):
    return small_job(models_dir, frames=4, motion=MOTION, variations=VARIATIONS, **fields)


def test_each_variation_is_the_chain_a_plain_job_with_its_seed_and_prompt_renders(models_dir):
    """The reference for variation v is a job without variations whose seed and prompt are v's: the same chain
    rendered alone (batch of one), each frame from the variation's previous frames (a random tiny model amplifies
    any difference along a chain, so frames are compared one step at a time). Batched matmuls may differ in the
    last bit, so a frame agrees to within a level of 255 or two in all but a few values (which ones, and how many,
    depends on the CPU's kernels: up to 0.8 % of them seen); other variations are far away."""
    job = variations_job(models_dir)
    assert job.variation_names == ("v1", "v2", "v3")
    lockstep = chain_frames(job, frames=range(12))
    assert sorted(lockstep) == list(range(12))
    for v, (offset, prompt) in enumerate([(0, "a lighthouse"), (100, "a lighthouse, at night"), (7, "a lighthouse")]):
        plain = small_job(models_dir, frames=4, motion=MOTION, seed=3 + offset, prompts={"0": prompt})
        for t in range(4):
            store = {u: lockstep[u * 3 + v] for u in range(t)}
            alone = chain_frames(plain, frames=[t], store=store)[t].astype(int)
            diff = np.abs(lockstep[t * 3 + v].astype(int) - alone)
            assert diff.mean() < 0.1 and (diff > 1).mean() < 0.02, \
                (v, t, diff.max(), diff.mean(), (diff > 1).mean())
            for w in set(range(3)) - {v}:
                assert np.abs(lockstep[t * 3 + w].astype(int) - alone).mean() > 20


def test_noise_made_ahead_in_worker_processes_gives_the_same_frames(models_dir):
    """Several chains make their next noise images in worker processes while a step diffuses: the same bytes as
    making each in line."""
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.kinds.deforum import DeforumChains

    job = small_job(models_dir, frames=3, motion={"noise": "0:(0.2)", "zoom": "0:(1.05)"}, variations=2)

    def frames(noise_ahead: bool) -> tuple[dict[int, np.ndarray], list[int]]:
        store: dict[int, np.ndarray] = {}
        chains = DeforumChains(RenderContext.for_job(job, previous_frame=store.__getitem__), noise_ahead=noise_ahead)
        try:
            for frame in range(6):
                store[frame] = chains.output(frame)
        finally:
            chains.close()
        return store, chains.noise_made_ahead

    assert DeforumChains.NOISE_IN_PROCESSES
    ahead, made_ahead = frames(True)
    inline, made_inline = frames(False)
    assert sorted(made_ahead) == [2, 3, 4, 5] and made_inline == []  # time steps 1 and 2 of both variations
    assert all(np.array_equal(ahead[f], inline[f]) for f in range(6))


def test_eight_variations_diffuse_in_two_pipelined_groups_with_the_frames_of_the_unpipelined_driver(models_dir):
    """From 8 variations on, a time step is one batch per lockstep group, and each group's next step is queued as
    soon as its current one is finished (the GPU works on one group while the CPU finishes the other). The head
    start changes only the order of CPU work: frames are byte-identical to rendering each step when it is needed,
    across a cadence (the next diffusion starts from a warped frame) and a shot cut, and when a restart finds the
    first steps in the store."""
    from framefarm.animation.plan import lockstep_groups
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.kinds.deforum import DeforumChains

    job = small_job(models_dir, frames=7, cadence=2, shots=[0, 4], motion=MOTION,
                    variations=[{"seed_offset": 10 * v} for v in range(8)])
    assert lockstep_groups(8) == ((0, 1, 2, 3), (4, 5, 6, 7))
    stored = 7 * 8

    def frames(ahead: bool, store: dict | None = None, first: int = 0):
        store = dict(store or {})
        DeforumChains.DIFFUSE_AHEAD = ahead
        try:
            chains = DeforumChains(RenderContext.for_job(job, previous_frame=store.__getitem__))
            try:
                for frame in range(first, stored):
                    store[frame] = chains.output(frame)
            finally:
                chains.close()
        finally:
            DeforumChains.DIFFUSE_AHEAD = True
        return store, chains.diffused_ahead

    pipelined, ahead = frames(True)
    plain, none = frames(False)
    # Diffused steps 0, 2 | 4, 6 (shot 1 starts at 4): steps 2 and 6 of both groups are queued ahead.
    assert sorted(ahead) == [2, 2, 6, 6] and none == []
    assert all(np.array_equal(pipelined[f], plain[f]) for f in range(stored))
    # A restart after time step 2 (frames of steps 0–2 stored): the chain resumes from the store.
    resumed, _ = frames(True, {f: pipelined[f] for f in range(3 * 8)}, first=3 * 8)
    assert all(np.array_equal(resumed[f], pipelined[f]) for f in range(stored))
    # Chunk by chunk (3 time steps each, as a render process renders them): no step is diffused ahead past a
    # chunk's frames, and the frames are the same.
    from framefarm.animation.plan import plan_job
    from framefarm.renderers.diffusers.kinds.deforum import render as render_deforum

    launched: list[int] = []
    launch = DeforumChains._launch

    def counted(self, chains, d):
        launched.append(d)
        return launch(self, chains, d)

    store: dict[int, np.ndarray] = {}
    DeforumChains._launch = counted
    try:
        for chunk in plan_job(job, renderer="test", chunk_size=3 * 8).chunks:
            context = RenderContext.for_job(job, previous_frame=store.__getitem__)
            for frame, image in render_deforum(chunk, list(chunk.frames), context):
                store[frame] = image
    finally:
        DeforumChains._launch = launch
    assert all(np.array_equal(store[f], pipelined[f]) for f in range(stored))
    # Chunk 0 (steps 0–2) diffuses 0 and 2 (2 ahead); chunk 1 (3–5) diffuses 2 again (frame 3 is D₂ warped) and 4
    # (a shot's first, never ahead), but not 6, which is past its frames; chunk 2 diffuses 6. Two groups each.
    assert launched == [0, 0, 2, 2, 2, 2, 4, 4, 6, 6]


def test_the_lockstep_group_enters_every_frame_key(monkeypatch):
    """Which chains share a batch fixes their pixels, so a job whose groups differ (here: one group of 8 instead of
    two of 4) gets other keys; groups are contiguous and cover every variation."""
    from framefarm.animation import plan
    from framefarm.job import validate_job

    job = validate_job(dict(kind="deforum", name="keys", width=64, height=64, frames=2, fps=8, seed=3,
                            prompts={"0": "a lighthouse"}, variations=8))
    for count in (1, 7, 8, 9, 16, 17, 64):
        groups = plan.lockstep_groups(count)
        assert [v for g in groups for v in g] == list(range(count))
        sizes = [len(g) for g in groups]
        assert max(sizes) - min(sizes) <= 1 and max(sizes) <= plan.LOCKSTEP_GROUP_CHAINS
    two = plan.plan_job(job, renderer="test").frame_keys
    monkeypatch.setattr(plan, "LOCKSTEP_GROUP_CHAINS", 16)
    monkeypatch.setattr(plan, "lockstep_groups", lambda count: (tuple(range(count)),))
    one = plan.plan_job(job, renderer="test").frame_keys
    assert set(two) == set(one) and all(two[f] != one[f] for f in two)


def test_each_variations_first_frame_is_diffusers_own_img2img_of_the_init_image(tmp_path, models_dir, tiny_library):
    """The reference is diffusers' StableDiffusionImg2ImgPipeline on the same tiny SD1.5 folder: frame 0 of every
    variation (one lockstep batch) is img2img of the init image with that variation's seed and prompt, so it must be
    diffusers' frame for that seed and prompt, within rounding of the batch (a level or two of 255)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline
    from PIL import Image

    from framefarm.renderers.testcard import source_testcard

    init = source_testcard(0, 64, 64, 8)
    Image.fromarray(init).save(tmp_path / "init.png")
    job = small_job(models_dir, frames=1, init_image=str(tmp_path / "init.png"), negative_prompt="",
                    color_coherence={"mode": "None"},
                    motion={"strength": "0:(0.75)", "noise": "0:(0)", "contrast": "0:(1)",
                            "anti_blur": {"amount": "0:(0)"}},
                    variations=VARIATIONS)
    frames = chain_frames(job, frames=range(3))
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(str(tiny_library.sd15_diffusers), torch_dtype=torch.float32,
                                                          safety_checker=None, requires_safety_checker=False,
                                                          local_files_only=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    for v, (offset, prompt) in enumerate([(0, "a lighthouse"), (100, "a lighthouse, at night"), (7, "a lighthouse")]):
        reference = np.asarray(pipe(prompt, negative_prompt="", image=Image.fromarray(init), strength=0.75,
                                    num_inference_steps=job.model.steps, guidance_scale=job.model.cfg_scale,
                                    generator=torch.Generator("cpu").manual_seed(3 + offset)).images[0]).astype(int)
        diff = np.abs(frames[v].astype(int) - reference)
        assert diff.max() <= 2 and diff.mean() < 0.2, (v, diff.max(), diff.mean())
