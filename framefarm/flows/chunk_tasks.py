"""The chunk as a Prefect background task: the parent flow queues it, any idle GPU worker of the farm runs it.

One task per priority level (``render-chunk-p1`` … ``render-chunk-p20``), each with a task key of its own: Prefect's
server keeps one queue per task key, and a task worker subscribed to several keys takes from the first non-empty
queue in the order it lists them (``prefect.server.task_queue.MultiQueue``). The chunk workers list the levels in
order, so a priority-1 job's chunks are taken before a priority-10 job's, by Prefect, with no scheduler of ours.

The task gets the job by reference (``framefarm.flows.job_ref``), the chunk's own per-frame inputs and the
dispatch; it renders like the in-flow chunk task (``render_chunk``: blocklist, watchdog, resumable frames) and
leaves a claim and an outcome in the job folder (``framefarm.flows.chunk_records``) for the parent to read.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

from prefect import task
from prefect.states import Cancelled

from framefarm.animation.plan import ChunkSpec
from framefarm.errors import RenderError
from framefarm.flows.chunk_records import ChunkClaim, Dispatch, take_over, write_outcome
from framefarm.flows.chunk_work import frame_listener
from framefarm.flows.gpu_slot import GPU, GpuWaitStopped
from framefarm.flows.job_ref import load_job_ref
from framefarm.flows.tasks import render_chunk, worker_id
from framefarm.storage import FrameStore

PRIORITY_LEVELS = 20  # job priorities 1…20 each get a queue; a larger number shares level 20


def priority_level(priority: int) -> int:
    return min(max(int(priority), 1), PRIORITY_LEVELS)


def pack_chunk(chunk: ChunkSpec) -> str:
    """A chunk as the task's parameter: JSON text. Prefect stores parameters of queued tasks as JSON-like values,
    which would turn a ChunkSpec into a bare tuple; and a worker must never unpickle what anyone with access to the
    Prefect server could have written there, so the chunk travels as plain data and is rebuilt field by field."""
    return json.dumps(asdict(chunk), allow_nan=False)


def unpack_chunk(packed: str) -> ChunkSpec:
    """The :class:`ChunkSpec` of :func:`pack_chunk`'s text; anything else is a RenderError (never executed)."""
    try:
        data = json.loads(packed)
        chunk = ChunkSpec(
            job=str(data["job"]), index=int(data["index"]), start=int(data["start"]), stop=int(data["stop"]),
            frame_keys=tuple(map(str, data["frame_keys"])), seeds=tuple(map(int, data["seeds"])),
            prompts=tuple(map(str, data["prompts"])), negative_prompts=tuple(map(str, data["negative_prompts"])),
            values={str(name): tuple(map(float, column)) for name, column in data["values"].items()},
            camera=tuple(tuple(map(float, row)) for row in data["camera"]), key=str(data["key"]),
            shot=int(data.get("shot", 0)))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RenderError(f"a queued chunk parameter is not a ChunkSpec ({type(exc).__name__}: {exc})") from None
    return chunk


def render_dispatched_chunk(packed_chunk: str, job_ref: str, backend: str, store_root: str,
                            dispatch: dict) -> int:
    """Render the chunk on this worker and record the outcome beside the frames. Returns frames rendered now."""
    chunk = unpack_chunk(packed_chunk)
    dispatch = Dispatch(**dispatch)
    job = load_job_ref(job_ref, store_root)
    store = FrameStore(store_root, job.name)
    run = _task_run_id()
    # Claimed the moment the chunk is taken, before it waits for the GPU (look-ahead): from here on the parent sees
    # this worker's heartbeat, and hands the chunk out again if the worker dies while the chunk waits. The chunk
    # worker writes the claim itself, before it acknowledges the task run to the server (ChunkWorker); this task
    # carries that claim on, or writes one when it runs elsewhere.
    claim = take_over(run) if run is not None else None
    if claim is None or (claim.index, claim.dispatch) != (chunk.index, dispatch):
        if claim is not None:
            claim.close()
        claim = ChunkClaim(store, chunk.index, dispatch, worker_id())
    with claim:
        try:
            # One chunk at a time on the GPU. The outcome is written before the GPU is let go, so a record's
            # ``finished`` is never after the next chunk's ``started`` on the same worker.
            with GPU.hold(len(chunk.frames), run):
                claim.started()
                try:
                    with frame_listener(GPU.frame):
                        result = render_chunk.fn(chunk, job, backend, store_root)
                except BaseException as exc:
                    write_outcome(store, claim, error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
                    raise
                write_outcome(store, claim, rendered=list(result.rendered), reused=list(result.reused),
                              seconds=round(result.seconds, 3), gpu=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                              started_at=result.started)
        except GpuWaitStopped:  # raised only while waiting: the worker stops before this chunk had the GPU
            claim.give_back()  # the parent queues it again at once; no failure, no outcome
            raise
    return len(result.rendered)


def _task_run_id():
    """This chunk's Prefect task run id (how the worker's loop knows the run it took), None outside a task run."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return context.task_run.id if context is not None else None


def _level_task(level: int):
    def run(label: str, chunk: str, job_ref: str, backend: str, store_root: str, dispatch: dict):
        try:
            return render_dispatched_chunk(chunk, job_ref, backend, store_root, dispatch)
        except GpuWaitStopped as stopped:  # given back, and queued again by the parent: a stop, not a failure
            return Cancelled(message=str(stopped))

    # The task key is the function's qualified name plus a hash of its code: a name per level, a queue per level.
    run.__name__ = run.__qualname__ = f"render_chunk_priority_{level}"
    # No retries here: the parent flow hands a failed chunk out again, so the retry may land on another worker.
    return task(run, name=f"render-chunk-p{level}", task_run_name="chunk-{label}", retries=0)


CHUNK_TASKS = {level: _level_task(level) for level in range(1, PRIORITY_LEVELS + 1)}


def chunk_task(priority: int):
    """The background task that queues a chunk of a job of ``priority``."""
    return CHUNK_TASKS[priority_level(priority)]
