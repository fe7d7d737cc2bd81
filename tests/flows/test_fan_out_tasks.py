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


def new_chunk_worker(**options):
    """A ChunkWorker, made inside an event loop as Prefect's TaskWorker must be."""
    import asyncio

    from framefarm.flows.chunk_worker import ChunkWorker

    async def make():
        return ChunkWorker(**options)

    return asyncio.run(make())


def test_every_priority_level_has_a_task_key_of_its_own():
    keys = [CHUNK_TASKS[level].task_key for level in range(1, PRIORITY_LEVELS + 1)]
    assert len(set(keys)) == PRIORITY_LEVELS
    assert chunk_task(1).task_key == keys[0]
    assert chunk_task(10).task_key == keys[9]
    assert chunk_task(500).task_key == keys[-1]  # beyond the last level: shares it
    assert chunk_task(0).task_key == keys[0]


def test_the_chunk_worker_subscribes_to_the_levels_most_urgent_first():
    worker = new_chunk_worker()
    assert worker.ordered_keys == [CHUNK_TASKS[level].task_key for level in range(1, PRIORITY_LEVELS + 1)]
    assert worker.limit == 2  # the chunk on the GPU and, with look-ahead, the next one waiting for it
    assert new_chunk_worker(lookahead_s=0).limit == 1  # without: one chunk in hand at a time


def test_the_gpu_slot_says_when_to_take_the_next_chunk():
    import time

    from framefarm.flows.gpu_slot import GpuSlot

    slot = GpuSlot()
    assert slot.may_take_next(15) and slot.may_take_next(0)  # the GPU is free
    slot.taken("run-1")
    assert not slot.may_take_next(15)  # taken, not yet on the GPU: it is the one waiting
    with slot.hold(10, "run-1"):
        assert slot.may_take_next(15)  # no frame yet and no earlier chunk to go by: at once
        assert not slot.may_take_next(0)  # without look-ahead, only a free GPU
        for frame in range(2):
            time.sleep(0.05)
            slot.frame(frame)
        remaining = slot.remaining_s()  # 8 frames left at ~0.05 s each
        assert 0.2 < remaining < 1.0, remaining
        assert slot.may_take_next(1.0) and not slot.may_take_next(0.1)
        slot.taken("run-2")
        assert not slot.may_take_next(1.0)  # at most one chunk waits
        slot.settled("run-2")  # that run ended without reaching the GPU
    assert slot.remaining_s() is None
    with slot.hold(100, "run-3"):  # before its first frame: the previous chunk's rate (~0.05 s a frame)
        assert 3.0 < slot.remaining_s() < 7.0 and not slot.may_take_next(2.0)


def test_the_gpu_renders_one_chunk_at_a_time_and_a_waiting_chunk_is_given_back_on_stop():
    import threading
    import time

    from framefarm.flows.gpu_slot import GpuSlot, GpuWaitStopped

    slot = GpuSlot()
    spans: list[tuple[float, float]] = []

    def render():
        with slot.hold(1):
            start = time.monotonic()
            time.sleep(0.2)
            spans.append((start, time.monotonic()))

    threads = [threading.Thread(target=render) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (a0, a1), (b0, b1) = sorted(spans)
    assert b0 >= a1  # never two on the GPU

    outcome: list[BaseException] = []

    def wait_then_stop():
        try:
            with slot.hold(1, "waiting"):
                outcome.append(AssertionError("rendered although the worker was stopping"))
        except GpuWaitStopped as exc:
            outcome.append(exc)

    with slot.hold(1):
        slot.taken("waiting")
        waiter = threading.Thread(target=wait_then_stop)
        waiter.start()
        time.sleep(0.1)
        slot.stopping.set()
        waiter.join(timeout=5)
    assert isinstance(outcome[0], GpuWaitStopped)
    assert slot.may_take_next(0)  # the given-back run no longer counts as waiting


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


def test_a_chunk_is_claimed_when_taken_started_on_the_gpu_and_can_be_given_back(tmp_path):
    import json

    from framefarm.flows.chunk_records import ChunkClaim, Dispatch, claim_name
    from framefarm.storage import FrameStore

    store = FrameStore(str(tmp_path), "job")
    path = tmp_path / "job" / claim_name(3)
    with ChunkClaim(store, 3, Dispatch(token="t", attempt=1, ready=1.0), "gpu-9") as claim:
        taken = json.loads(path.read_text())
        assert taken["worker"] == "gpu-9" and "taken" in taken and "heartbeat" in taken
        assert "started" not in taken  # waiting for the GPU: claimed, with a heartbeat, but not started
        claim.started()
        started = json.loads(path.read_text())
        assert started["started"] >= started["taken"]
        claim.give_back()
    given_back = json.loads(path.read_text())
    assert given_back["given_back"] and given_back["attempt"] == 1


def test_a_stopping_worker_gives_back_the_chunks_it_took_whose_task_never_started(tmp_path):
    """SIGTERM can come after a chunk worker took a chunk off the server (its claim written and kept for the task)
    but before that task started; Prefect's stop then ends the event loop that would start it. The worker gives
    such claims back itself, so the parent queues those chunks again at once; a claim a task carried on is not
    touched."""
    import json

    from framefarm.flows.chunk_records import ChunkClaim, Dispatch, claim_name, hand_over, take_over
    from framefarm.flows.chunk_worker import give_back_untaken
    from framefarm.storage import FrameStore

    store = FrameStore(str(tmp_path), "job")
    untaken = ChunkClaim(store, 4, Dispatch(token="t", attempt=2, ready=1.0), "gpu-9")
    carried = ChunkClaim(store, 5, Dispatch(token="t", attempt=1, ready=1.0), "gpu-9")
    hand_over("run-4", untaken)
    hand_over("run-5", carried)
    assert take_over("run-5") is carried  # its task started and carries the claim on
    try:
        give_back_untaken()
        assert take_over("run-4") is None  # given back: no task can carry it on any more
        given_back = json.loads((tmp_path / "job" / claim_name(4)).read_text())
        assert given_back["given_back"] and given_back["attempt"] == 2
        assert "given_back" not in json.loads((tmp_path / "job" / claim_name(5)).read_text())
    finally:
        carried.close()


def test_a_claim_published_as_the_worker_begins_to_stop_is_given_back_not_left_to_go_stale(tmp_path):
    """The stop's handler gives back the claims it finds; a claim still being written on its thread when the stop
    came (the handler looked before it was kept for its task) is given back by that thread, so the parent never
    waits for its heartbeat to go stale. The handler may also interrupt the main thread while it holds the lock
    of the kept claims: taking them all again there must not deadlock."""
    import json

    from framefarm.flows.chunk_records import Dispatch, _handed_over_lock, claim_name, take_over
    from framefarm.flows.chunk_worker import give_back_untaken
    from framefarm.storage import FrameStore

    worker = new_chunk_worker(lookahead_s=5)
    try:
        worker.gpu.stopping.set()
        claim = worker._write_claim("run-7", FrameStore(str(tmp_path), "job"), 7, Dispatch("t", 3, 1.0))
        assert take_over("run-7") is None  # given back, not kept for a task that will not start
        document = json.loads((tmp_path / "job" / claim_name(7)).read_text())
        assert document["given_back"] and document["attempt"] == 3 and claim.document["given_back"]
        with _handed_over_lock:  # the main thread inside take_over when the signal's handler runs
            give_back_untaken()
    finally:
        worker.gpu.stopping.clear()


def test_a_second_stop_signal_gives_back_what_waits_and_exits_at_once(tmp_path, monkeypatch):
    """The first SIGTERM/Ctrl-C lets the chunk on the GPU finish; a second one exits at once, with the shell's
    status for that signal, after giving back the chunks taken whose task never started."""
    import json
    import signal

    from framefarm.flows import chunk_worker
    from framefarm.flows.chunk_records import ChunkClaim, Dispatch, claim_name, hand_over
    from framefarm.storage import FrameStore

    class Exited(Exception):
        pass

    def exit_now(status):
        raise Exited(status)

    monkeypatch.setattr(chunk_worker.os, "_exit", exit_now)
    worker = new_chunk_worker(lookahead_s=5)
    try:
        worker.handle_sigterm(signal.SIGTERM, None)  # the first: a stop, the process goes on
        assert worker.gpu.stopping.is_set() and worker.stopping
        taken = ChunkClaim(FrameStore(str(tmp_path), "job"), 2, Dispatch("t", 1, 1.0), "gpu-9")
        hand_over("run-2", taken)
        with pytest.raises(Exited) as exited:
            worker.handle_sigterm(signal.SIGINT, None)
        assert exited.value.args == (128 + signal.SIGINT,)  # 130, as for Ctrl-C anywhere else
        assert json.loads((tmp_path / "job" / claim_name(2)).read_text())["given_back"]
    finally:
        worker.gpu.stopping.clear()
