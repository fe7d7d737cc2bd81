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
    last bit, so a frame agrees to within a level of 255 or two; other variations are far away."""
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
            assert diff.mean() < 0.1 and (diff > 1).mean() < 0.005, \
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
