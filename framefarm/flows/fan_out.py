"""Fan-out: the parent flow run of a job queues its chunks as Prefect background tasks for every GPU worker.

The parent plans, queues chunks (``framefarm.flows.chunk_tasks``, at the job's priority level), reads how they
ended from the job folder (``framefarm.flows.chunk_records``), and hands a chunk out again when

* it failed (up to ``farm.chunk_retries`` more times; the next try may land on another worker),
* its worker died mid-chunk, or while the chunk waited for the worker's GPU (look-ahead: the claim is written when
  the chunk is taken): its claim's heartbeat stopped for ``STALE_CLAIM_S`` (finished frames are kept: the next
  worker renders only what the manifest lacks),
* its worker was stopped (SIGTERM, Ctrl-C) before the chunk got the GPU, and gave it back (its claim says so),
* the Prefect server restarted while it waited in the queue (the server keeps queued task runs in memory only).

Prefect does the queueing, priorities and hand-out to workers; the parent decides nothing about placement. A
Deforum chain's chunks are queued one at a time per shot, in order, the next only once the previous one's outcome is
written (after its last frame), so no worker can take it early, look-ahead or not; everything else is queued at
once, up to ``farm.max_parallel_chunks`` (default ``DEFAULT_IN_FLIGHT``) per job.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from framefarm.errors import InputError, RenderError
from framefarm.flows.chunk_records import (HEARTBEAT_S, Dispatch, claim_name, outcome_name, read_record,
                                           record_names)
from framefarm.flows.chunk_tasks import chunk_task, pack_chunk
from framefarm.flows.stop import raise_if_stopped, stop_requested
from framefarm.flows.tasks import ChunkResult
from framefarm.renderers import get_renderer
from framefarm.storage import FrameStore

POLL_S = 1.0
STALE_CLAIM_S = 6 * HEARTBEAT_S  # a worker that missed this many heartbeats is gone
DEFAULT_IN_FLIGHT = 256  # chunks of one job queued at once: enough for a big farm, bounded for the server's queue
CRASH_ALLOWANCE = 3  # worker deaths beyond chunk_retries a chunk may see (a kill is rarely the chunk's fault)


@dataclass
class _Queued:
    chunk: Any
    dispatch: Dispatch
    task_run_id: str


class _ServerWatch:
    """Whether the Prefect server answers, and whether it went away since the last look (then it may have lost
    the queued task runs, which it keeps in memory)."""

    def __init__(self) -> None:
        from prefect.settings import get_current_settings

        url = get_current_settings().api.url
        if not url:
            raise InputError("fan_out", True, "needs a Prefect server (PREFECT_API_URL)",
                             "Submit to the farm (framefarm submit --fan-out) or render without fan-out")
        self.health = f"{url.rstrip('/')}/health"
        self.went_away = False

    def up(self) -> bool:
        try:
            ok = httpx.get(self.health, timeout=3.0).status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            self.went_away = True
        return ok


def _retire(task_run_id: str, why: str, crashed: bool) -> None:
    """Mark a task run that was handed out again as Crashed (its worker died) or Cancelled (lost in the queue), so
    Prefect's UI does not show it running or waiting for ever. Best effort: the chunk's truth is in the store."""
    from prefect import get_client
    from prefect.states import Cancelled, Crashed

    try:
        with get_client(sync_client=True) as client:
            client.set_task_run_state(uuid.UUID(task_run_id), (Crashed if crashed else Cancelled)(message=why), force=True)
    except Exception:  # noqa: BLE001 - only the UI's view depends on it
        pass


def run_chunks_on_workers(plan, chunks, job, job_ref: str, backend: str, out: str, priority: int,
                          lock=None) -> tuple[list[ChunkResult], list[tuple[int, str]]]:
    """Queue ``chunks`` for the farm's chunk workers and wait for them; same results as the in-flow loop."""
    store = FrameStore(out, job.name)
    token = uuid.uuid4().hex
    task = chunk_task(priority)
    limit = job.farm.max_parallel_chunks or DEFAULT_IN_FLIGHT
    sequential = plan.chained and getattr(get_renderer(backend), "reads_previous_frames", False)
    watch = _ServerWatch()
    pending = list(chunks)
    queued: dict[int, _Queued] = {}
    handouts: Counter[int] = Counter()  # numbers each hand-out, so a claim names the one it belongs to
    tries: Counter[int] = Counter()  # failed renders per chunk
    crashes: Counter[int] = Counter()
    results: list[ChunkResult] = []
    failures: list[tuple[int, str]] = []

    def queue(chunk) -> None:
        handouts[chunk.index] += 1
        dispatch = Dispatch(token=token, attempt=handouts[chunk.index], ready=time.time())
        future = task.apply_async(kwargs={"label": f"{job.name}-{chunk.index}", "chunk": pack_chunk(chunk),
                                          "job_ref": job_ref, "backend": backend, "store_root": out,
                                          "dispatch": asdict(dispatch)})
        queued[chunk.index] = _Queued(chunk, dispatch, str(future.task_run_id))

    def again(entry: _Queued, why: str, crashed: bool) -> None:
        del queued[entry.chunk.index]
        _retire(entry.task_run_id, why, crashed)
        pending.insert(0, entry.chunk)

    while pending or queued:
        if lock is not None and lock.lost is not None:
            raise RenderError(f"the lock of {job.name} was {lock.lost}: this run stops writing")
        if stop_requested():
            break
        # 1. Queue what may start: everything, except a chain's next chunk before its previous one finished.
        busy_shots = {entry.chunk.shot for entry in queued.values()} if sequential else set()
        while pending and len(queued) < limit and len(failures) < job.farm.error_budget:
            chunk = next((c for c in pending if c.shot not in busy_shots), None)
            if chunk is None:
                break
            try:
                queue(chunk)
            except Exception:  # noqa: BLE001 - the server is away: queue it once it is back
                watch.went_away = True
                break
            pending.remove(chunk)
            busy_shots.add(chunk.shot)
        if not queued and (not pending or len(failures) >= job.farm.error_budget):
            break
        time.sleep(POLL_S)
        if not watch.up():
            continue
        if watch.went_away:  # the server restarted: chunks that no worker took are gone from its queues
            watch.went_away = False
            names = record_names(store)
            for entry in list(queued.values()):
                if not _claimed(store, names, entry):
                    again(entry, "lost from the queue when the Prefect server restarted", crashed=False)
            continue
        # 2. Read how the queued chunks are doing.
        names = record_names(store)
        now = time.time()
        for index, entry in list(queued.items()):
            outcome = read_record(store, outcome_name(index)) if outcome_name(index) in names else None
            # Any hand-out's success counts (the frames are the same); an error only from the hand-out now queued.
            if outcome is not None and outcome.get("token") == token and (
                    "error" not in outcome or outcome.get("attempt") == entry.dispatch.attempt):
                del queued[index]
                if "error" not in outcome:
                    results.append(ChunkResult(index=index, rendered=tuple(outcome["rendered"]),
                                               reused=tuple(outcome["reused"]), seconds=outcome["seconds"],
                                               worker=outcome["worker"], visible_devices=outcome.get("gpu", ""),
                                               started=outcome.get("started_at", "")))
                elif outcome.get("error_type") in ("InputError", "RenderStopped"):
                    raise RenderError(f"chunk {index} of {job.name}: {outcome['error']}")
                else:
                    tries[index] += 1
                    if tries[index] <= job.farm.chunk_retries:
                        pending.insert(0, entry.chunk)
                    else:
                        failures.append((index, outcome["error"]))
                        if sequential:  # the shot's later frames would start from a frame that does not exist
                            pending = [c for c in pending if c.shot != entry.chunk.shot]
                continue
            claim = _claimed(store, names, entry)
            if claim is not None and claim.get("given_back"):  # its worker stopped before the chunk had a GPU
                again(entry, f"worker {claim['worker']} stopped and gave it back", crashed=False)
            elif claim is not None and now - claim["heartbeat"] > STALE_CLAIM_S:
                crashes[index] += 1
                if crashes[index] > job.farm.chunk_retries + CRASH_ALLOWANCE:
                    del queued[index]
                    failures.append((index, f"its worker {claim['worker']} died {crashes[index]} times"))
                else:
                    again(entry, f"worker {claim['worker']} stopped its heartbeat", crashed=True)
    raise_if_stopped(f"{len(pending) + len(queued)} more chunk(s) of {job.name}")
    return results, failures


def _claimed(store: FrameStore, names: set[str], entry: _Queued) -> dict | None:
    """This hand-out's claim, when a worker has started it."""
    if claim_name(entry.chunk.index) not in names:
        return None
    claim = read_record(store, claim_name(entry.chunk.index))
    if claim is None or claim.get("token") != entry.dispatch.token or claim.get("attempt") != entry.dispatch.attempt:
        return None
    return claim
