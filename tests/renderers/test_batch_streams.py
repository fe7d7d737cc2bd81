"""Consecutive video2video batches on two CUDA streams: off the GPU nothing changes, and the batches' network sets
(which decide whether two batches may overlap) are read from the frames' prompts."""

from __future__ import annotations

import contextlib

from framefarm.renderers.diffusers.kinds.video2video import batch_networks
from framefarm.renderers.diffusers.patches import NO_NETWORKS
from framefarm.renderers.diffusers.streams import BatchStreams


def test_on_a_cpu_every_batch_runs_in_the_callers_stream():
    streams = BatchStreams("cpu")
    assert not streams.overlapping
    for n in range(3):
        assert isinstance(streams.stream(n, (NO_NETWORKS,)), contextlib.nullcontext)
    streams.finish()


def test_a_batch_lists_the_network_sets_its_groups_apply_in_order():
    from framefarm.animation.plan import plan_job
    from framefarm.job import job_from_preset

    job = job_from_preset("video-restyle", ["frames=4", "batch_size=4", 'prompts.0="a cat <lora:ink:0.5>"',
                                            'prompts.2="a cat"'])
    chunk = plan_job(job, renderer="diffusers@test", chunk_size=4).chunks[0]
    sets = batch_networks(job, chunk, [0, 1, 2, 3])
    assert len(sets) == 2
    assert sets[0].loras == (("ink", 0.5, 0.5),) and sets[1] == NO_NETWORKS
    assert batch_networks(job, chunk, [2, 3]) == (NO_NETWORKS,)
