"""The pieces of fan-out that need no server: a queue per priority level, the chunk worker's subscription order,
chunks travelling intact, and the simulated GPU's frames."""

from __future__ import annotations

import numpy as np
import pytest

from framefarm.animation.plan import plan_job
from framefarm.errors import RenderError
from framefarm.flows.chunk_tasks import CHUNK_TASKS, PRIORITY_LEVELS, chunk_task, pack_chunk, unpack_chunk
from framefarm.job import validate_job
from framefarm.renderers import get_renderer
from framefarm.renderers.base import RenderContext


def small_job():
    return validate_job({"kind": "deforum", "name": "fan", "frames": 12, "width": 64, "height": 64}, source="test")


def test_every_priority_level_has_a_task_key_of_its_own():
    keys = [CHUNK_TASKS[level].task_key for level in range(1, PRIORITY_LEVELS + 1)]
    assert len(set(keys)) == PRIORITY_LEVELS
    assert chunk_task(1).task_key == keys[0]
    assert chunk_task(10).task_key == keys[9]
    assert chunk_task(500).task_key == keys[-1]  # beyond the last level: shares it
    assert chunk_task(0).task_key == keys[0]


def test_the_chunk_worker_subscribes_to_the_levels_most_urgent_first():
    import asyncio

    from framefarm.flows.chunk_worker import ChunkWorker

    async def make():  # Prefect's TaskWorker is made inside an event loop
        return ChunkWorker()

    worker = asyncio.run(make())
    assert worker.ordered_keys == [CHUNK_TASKS[level].task_key for level in range(1, PRIORITY_LEVELS + 1)]
    assert worker.limit == 1  # one chunk per GPU at a time


def test_a_chunk_travels_intact_and_nothing_else_passes_for_one():
    import base64
    import pickle

    chunk = plan_job(small_job(), renderer="simulated@1", chunk_size=4).chunks[1]
    assert unpack_chunk(pack_chunk(chunk)) == chunk
    with pytest.raises(RenderError, match="not a ChunkSpec"):
        unpack_chunk(base64.b64encode(pickle.dumps(("a", "tuple"))).decode())


def test_a_pickled_payload_in_the_queue_is_refused_without_being_run(tmp_path):
    """Anyone who can write task parameters to the Prefect server must not run code on a worker: a pickle whose
    loading would create a file is refused as not a chunk, and the file is never made."""
    import base64
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with pytest.raises(RenderError, match="not a ChunkSpec"):
        unpack_chunk(base64.b64encode(pickle.dumps(Payload())).decode())
    with pytest.raises(RenderError, match="not a ChunkSpec"):
        unpack_chunk(pickle.dumps(Payload()).decode("latin-1"))
    assert not marker.exists()


def test_simulated_frames_are_a_pure_function_of_the_chunk(monkeypatch):
    monkeypatch.setenv("FRAMEFARM_SIMULATED_SECONDS_PER_FRAME", "0")
    job = small_job()
    renderer = get_renderer("simulated")
    whole = plan_job(job, renderer=renderer.id, chunk_size=12).chunks[0]
    split = plan_job(job, renderer=renderer.id, chunk_size=4).chunks
    context = RenderContext(job=job)
    once = dict(renderer.render(whole, list(whole.frames), context))
    chunked = {f: image for chunk in split for f, image in renderer.render(chunk, list(chunk.frames), context)}
    assert once.keys() == set(range(12))
    assert all(np.array_equal(once[f], chunked[f]) for f in once)
    assert once[0].shape == (64, 64, 3) and once[0].dtype == np.uint8
