"""What a fanned-out chunk leaves in its job folder: who took it (a claim with a heartbeat) and how it ended.

``<job>/chunk-runs/<index>.claim.json`` is written by the worker the moment it takes the chunk from Prefect's queue
(``taken``), also when the chunk then waits for the worker's GPU (look-ahead), and refreshed every ``HEARTBEAT_S``
from then on; ``started`` is added when the chunk gets the GPU. A worker that stops before a waiting chunk got the
GPU marks the claim ``given_back``. ``<job>/chunk-runs/<index>.json`` records the outcome (rendered frames, worker,
``taken``/``started``/``finished`` times, or the error).
Both carry the dispatch token of the parent flow run, so records of an earlier run of the job are never taken for
this run's. The job's parent flow reads them to know a chunk is done, failed, or lost with a killed worker (a claim
whose heartbeat stopped); the frames themselves stay the manifest's business. Kept free of Prefect.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from framefarm.storage import FrameStore

RECORDS_DIR = "chunk-runs"
HEARTBEAT_S = 2.0


@dataclass(frozen=True)
class Dispatch:
    """One hand-out of a chunk by the parent flow: the token names the parent run, ``attempt`` counts hand-outs."""

    token: str
    attempt: int
    ready: float  # epoch seconds when the chunk was queued for the workers


def outcome_name(index: int) -> str:
    return f"{RECORDS_DIR}/{index:06d}.json"


def claim_name(index: int) -> str:
    return f"{RECORDS_DIR}/{index:06d}.claim.json"


class ChunkClaim:
    """The claim of a taken chunk, its heartbeat refreshed on a thread until :meth:`close` or :meth:`give_back`.

    Written when the worker takes the chunk, before it waits for its GPU: a worker killed while the chunk waits
    leaves a claim whose heartbeat stops, and the parent hands the chunk out again, exactly as for a chunk killed
    mid-render."""

    def __init__(self, store: FrameStore, index: int, dispatch: Dispatch, worker: str) -> None:
        self.store, self.index, self.dispatch = store, index, dispatch
        self.document = {"index": index, "token": dispatch.token, "attempt": dispatch.attempt, "worker": worker,
                         "ready": dispatch.ready, "taken": time.time()}
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one write at a time, so a late beat never undoes a newer document
        self._beat()
        self._thread = threading.Thread(target=self._run, name=f"chunk-{index}-claim", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        with self._lock:
            if not self.document.get("given_back"):
                self.store.write_json(claim_name(self.index), {**self.document, "heartbeat": time.time()})

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):  # the store is unreachable a moment: the next beat tries again
                self._beat()

    def started(self) -> None:
        """The chunk got the GPU now (``started``: the start of its GPU work, what the farm's figures measure)."""
        self.document["started"] = time.time()
        with contextlib.suppress(OSError):  # the heartbeat writes it again within HEARTBEAT_S
            self._beat()

    def give_back(self) -> None:
        """The worker stops before this chunk got its GPU: say so, so the parent queues it again at once (not a
        failure, not a crash). Ends the heartbeat."""
        self.close()
        with self._lock:
            self.document["given_back"] = time.time()
            self.store.write_json(claim_name(self.index), {**self.document, "heartbeat": time.time()})

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> ChunkClaim:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


_handed_over: dict[Any, ChunkClaim] = {}
# Re-entrant: a stopping worker's signal handler takes them all (``take_over_all``) on the main thread, which may
# have been interrupted inside ``take_over``.
_handed_over_lock = threading.RLock()


def hand_over(run: Any, claim: ChunkClaim) -> None:
    """Keep the claim a chunk worker wrote when it took task run ``run``, for that run's task to carry on."""
    with _handed_over_lock:
        _handed_over[run] = claim


def take_over(run: Any) -> ChunkClaim | None:
    """The claim :func:`hand_over` kept for task run ``run`` (once), or None."""
    with _handed_over_lock:
        return _handed_over.pop(run, None)


def take_over_all() -> list[ChunkClaim]:
    """Every claim :func:`hand_over` still keeps: chunks taken whose task has not carried its claim on (yet)."""
    with _handed_over_lock:
        claims = list(_handed_over.values())
        _handed_over.clear()
        return claims


def write_outcome(store: FrameStore, claim: ChunkClaim, **fields: Any) -> None:
    store.write_json(outcome_name(claim.index), {**claim.document, "finished": time.time(), **fields})


def read_record(store: FrameStore, name: str) -> dict[str, Any] | None:
    try:
        return store.read_json(name)
    except (FileNotFoundError, ValueError):  # not there yet (a half-written file is never seen: writes are atomic)
        return None


def record_names(store: FrameStore) -> set[str]:
    """Names of the records in the job's chunk-runs folder now (one listing, not cached)."""
    folder = store.path(RECORDS_DIR)
    store.fs.invalidate_cache(folder)
    try:
        return {f"{RECORDS_DIR}/{path.rsplit('/', 1)[-1]}" for path in store.fs.ls(folder, detail=False)}
    except FileNotFoundError:
        return set()

