"""A renderer that runs out of GPU memory: the batch is rendered again in halves, the chunk completes, and frames
stay within the measured batch-size drift (≤ 1/255 on the tiny model) of a clean render; only a frame that does not
fit alone fails, and then the job fails clearly with its finished frames intact.

The fault is raised where a real one comes from: a forward pre-hook on the loaded UNet refuses any call whose
latent batch is above a limit, with ``torch.OutOfMemoryError`` (what PyTorch raises for CUDA memory)."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
import torch

from framefarm.errors import RenderError
from framefarm.renderers.diffusers.components import load_components
from framefarm.renderers.oom import is_out_of_memory, split_halves
from tests.faults.conftest import fault_trials
from tests.renderers.jobs import v2v_job
from tests.renderers.test_diffusers_renderer import max_diff, render

# docs/models.md: batch sizes 1 and 4 differ by at most 1 level of 255 on the tiny model (CPU, float32).
HALVING_TOLERANCE = 1


@contextlib.contextmanager
def unet_memory(job, *, max_frames: int | None, seen: list[int] | None = None):
    """While active, a UNet call with more than ``max_frames`` frames raises out-of-memory (CFG doubles the latent
    batch: 2 latents per frame). ``seen`` collects the frame count of every call that went through."""
    unet = load_components(job).base.unet  # the process-wide cached base: the same object the renderer uses

    def hook(_module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        frames = max(1, sample.shape[0] // 2)
        if max_frames is not None and frames > max_frames:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {frames * 512} MiB (injected)")
        if seen is not None:
            seen.append(frames)

    handle = unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def test_split_is_fixed_and_covers_the_batch():
    assert split_halves([0, 1, 2, 3, 4]) == ([0, 1, 2], [3, 4])
    assert split_halves([7]) == ([7], [])
    assert is_out_of_memory(torch.OutOfMemoryError("x")) and is_out_of_memory(RuntimeError("CUDA out of memory"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only the device's own error types


def test_out_of_memory_halves_the_batch_and_frames_stay_within_tolerance(models_dir, fault_log):
    job = v2v_job(models_dir, controlnet=False)  # 8 frames, batch size 4, 2 steps, 64×64
    unlimited: list[int] = []
    with unet_memory(job, max_frames=None, seen=unlimited):
        clean = render(job)
    rng = random.Random(11)
    for trial in range(fault_trials()):
        limit = rng.choice([1, 2, 3])
        seen: list[int] = []
        with unet_memory(job, max_frames=limit, seen=seen):
            halved = render(job)
        assert sorted(halved) == sorted(clean)
        assert max(seen) <= limit < max(unlimited)  # never above the limit...
        assert sum(seen) == sum(unlimited)  # ...and every frame's every step still ran, once
        drift = max_diff(clean, halved)
        assert drift <= HALVING_TOLERANCE, f"limit {limit}: drift {drift}"
        with unet_memory(job, max_frames=limit):
            again = render(job)
        assert all(np.array_equal(halved[i], again[i]) for i in halved)  # same limit, same splits, same pixels
        fault_log.trial("renderer out of memory (batch halves)", survived=True, frames_lost=0,
                        outcome=f"completed, drift {drift}/255", frames_per_call=limit)


@pytest.mark.usefixtures("prefect_server")
def test_a_frame_that_does_not_fit_alone_fails_the_job_and_keeps_finished_frames(models_dir, tmp_path, fault_log):
    from framefarm.flows.render import render_job
    from framefarm.storage import FrameStore
    from tests.faults.conftest import frame_hashes

    job = v2v_job(models_dir, "name=oom-flow", "farm.chunk_retries=0", "farm.error_budget=1",
                  "farm.max_parallel_chunks=1", controlnet=False)
    # The fault is a hook on this process's UNet: chunks render in the task's thread here, not in a render process.
    job = job.model_copy(update={"farm": job.farm.model_copy(update={"chunk_timeout": None})})
    clean = render_job(job, backend="diffusers", out=str(tmp_path / "clean"), chunk_size=4)
    assert clean.rendered == 8
    expected = frame_hashes(tmp_path / "clean" / job.name / "frames")

    out = tmp_path / "oom"
    store = FrameStore(str(out), job.name)
    calls = {"n": 0}
    unet = load_components(job).base.unet

    def memory_gone_after_first_chunk(_module, args, kwargs):
        calls["n"] += 1
        if calls["n"] > 1:  # chunk 0 (one UNet call: 1 step at strength 0.55) fits; then nothing fits
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    handle = unet.register_forward_pre_hook(memory_gone_after_first_chunk, with_kwargs=True)
    try:
        with pytest.raises(RenderError, match=r"chunk 1: OutOfMemoryError: CUDA out of memory"):
            render_job(job, backend="diffusers", out=str(out), chunk_size=4)
    finally:
        handle.remove()
    finished = store.records()
    assert sorted(finished) == [0, 1, 2, 3]
    assert store.verify_frames({i: r.key for i, r in finished.items()}) == []  # intact
    resumed = render_job(job, backend="diffusers", out=str(out), chunk_size=4)
    assert resumed.rendered == 4
    assert frame_hashes(out / job.name / "frames") == expected
    fault_log.trial("renderer out of memory (single frame)", survived=True, frames_lost=0,
                    outcome="clear failure, finished frames kept, resume identical")
