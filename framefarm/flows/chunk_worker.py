"""A GPU worker of the farm: a Prefect task worker that runs queued chunks, one at a time, highest priority first.

Start one per GPU (``framefarm chunk-worker``, ``CUDA_VISIBLE_DEVICES=i``). Three changes to Prefect's own
``TaskWorker``, all about when a task run leaves the server's queue:

* it subscribes to the priority levels in order (``render-chunk-p1`` first): Prefect's server then hands it the
  most urgent queued chunk (its ``MultiQueue`` tries the keys in the order the subscription lists them; Prefect's
  own worker sends them as an unordered set);
* it holds a subscription only while it may take a chunk, and closes it as soon as one arrives. Prefect's worker
  acknowledges task runs up to its limit whenever they come, so a busy worker would sit on chunks that an idle
  one could render. Closed, the socket never holds one: a run the server had in hand for it goes back to the
  front of its queue (the server's retry queue);
* look-ahead (``lookahead_s``, default ``DEFAULT_LOOKAHEAD_S``): it takes its next chunk while the current one
  still renders, once that one is estimated to have at most ``lookahead_s`` left (``framefarm.flows.gpu_slot``).
  The hand-out — a new subscription, the server's pick, the ack, the parameters file, Pending and Running —
  then overlaps GPU work instead of leaving the GPU idle between chunks (measured at 0.8–1.8 s a hand-out against
  8 s chunks). At most one chunk waits (Prefect's own limit: 2 task runs), the GPU renders one at a time (a lock
  in the task), and the waiting chunk has written its claim with a heartbeat, so a worker killed while it waits
  loses nothing: the parent hands the chunk out again, as for a chunk killed mid-render. ``lookahead_s = 0`` takes
  a chunk only when the GPU is free (and limit 1).

Stopping (SIGTERM, SIGINT): no new chunk is taken; a chunk waiting for the GPU is given back (its claim says so
and the parent queues it again at once); the chunk on the GPU is left to finish, as before look-ahead, and the
process exits 0. A second signal stops at once: the chunk on the GPU is handed out again once its claim is stale, and
the frames it finished are kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading

from prefect.client.schemas.objects import TaskRun
from prefect.client.subscriptions import Subscription
from prefect.results import ResultStore, get_or_create_default_task_scheduling_storage
from prefect.settings import get_current_settings
from prefect.task_worker import TaskWorker, read_parameters

from framefarm.flows.chunk_records import ChunkClaim, Dispatch, hand_over, take_over, take_over_all
from framefarm.flows.chunk_tasks import CHUNK_TASKS, PRIORITY_LEVELS, unpack_chunk
from framefarm.flows.gpu_slot import DEFAULT_LOOKAHEAD_S, GPU
from framefarm.flows.tasks import worker_id
from framefarm.storage import FrameStore

logger = logging.getLogger("framefarm.chunk_worker")
RECONNECT_S = 1.0
LOOKAHEAD_POLL_S = 0.2  # how often the loop re-estimates the current chunk's time left


class ChunkWorker(TaskWorker):
    """Prefect's task worker, taking one chunk at a time from the priority levels in order, the next one up to
    ``lookahead_s`` before the current one ends."""

    def __init__(self, lookahead_s: float = DEFAULT_LOOKAHEAD_S) -> None:
        if lookahead_s < 0:
            raise ValueError(f"lookahead_s must be 0 or more, not {lookahead_s}")
        tasks = [CHUNK_TASKS[level] for level in range(1, PRIORITY_LEVELS + 1)]
        # The limit counts task runs in hand: the one on the GPU and, with look-ahead, the one waiting for it.
        super().__init__(*tasks, limit=2 if lookahead_s > 0 else 1)
        self.ordered_keys = [task.task_key for task in tasks]
        self.lookahead_s = float(lookahead_s)
        self.gpu = GPU
        self.gpu.stopping.clear()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiving: asyncio.Task | None = None  # the wait for the server's next chunk, while it waits

    def handle_sigterm(self, signum: int, frame: object) -> None:
        """Stop taking chunks; let the one on the GPU finish; exit once it has. A second signal exits at once.

        Not Prefect's own stop: it raises ``StopTaskWorker`` out of the signal handler into whatever the event loop
        was doing (a claim half taken, a task run being submitted), ends the loop with a logged traceback, and
        leaves it to chance which of this worker's records are written. Here the loop winds down by itself: only
        the wait for a new chunk is cancelled, before anything arrived."""
        if self.gpu.stopping.is_set():
            logger.warning("stopping now: the chunk on the GPU is handed out again once its claim is stale")
            give_back_untaken()
            os._exit(128 + signum)
        # Set first, so a chunk waiting for the GPU is given back rather than rendered while the process exits.
        self.gpu.stopping.set()
        self.stopping = True  # Prefect's flag, which its status page shows
        # A warning so that it shows at Prefect's default log level: the operator who sent the signal sees it taken.
        logger.warning("stopping: no new chunk is taken, a chunk waiting for the GPU is given back, the one on it "
                       "finishes first (signal again to stop at once)")
        # A chunk taken off the server whose task has not started yet has no thread to see ``stopping``: give its
        # claim back now, so the parent queues it again at once instead of after a stale heartbeat. (A task that
        # starts anyway finds no claim kept for it, writes its own, sees ``stopping`` before the GPU and gives that
        # back.)
        give_back_untaken()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop_receiving)  # signal-safe: it wakes the loop by its self-pipe

    def _stop_receiving(self) -> None:
        """On the event loop: cancel the wait for a new chunk, if the loop is in it (nothing taken yet)."""
        if self._receiving is not None:
            self._receiving.cancel()

    async def _subscribe_to_task_scheduling(self) -> None:
        base_url = get_current_settings().api.url
        if base_url is None:
            raise ValueError("PREFECT_API_URL must name the farm's Prefect server: chunk workers need one")
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C stops like SIGTERM: asyncio's own handler would cancel the loop and leave a chunk waiting for
            # the GPU to render on while the process winds down.
            signal.signal(signal.SIGINT, self.handle_sigterm)
        self._loop = asyncio.get_running_loop()
        logger.info("taking chunks of priority 1…%d, one at a time, the next %g s ahead", PRIORITY_LEVELS,
                    self.lookahead_s)
        while not self.gpu.stopping.is_set():
            await self._limiter.acquire()  # room for one more task run …
            self._limiter.release()
            # … and the GPU free, or its chunk nearly done (look-ahead), with no chunk already waiting for it
            while not self.gpu.may_take_next(self.lookahead_s) and not self.gpu.stopping.is_set():
                await asyncio.sleep(LOOKAHEAD_POLL_S)
            if self.gpu.stopping.is_set():
                break
            try:
                task_run = await self._next_task_run(base_url)  # … then take one chunk off the server's queues
            except asyncio.CancelledError:
                if self.gpu.stopping.is_set():  # the stop cancelled the wait: nothing was taken
                    break
                raise
            except Exception as exc:  # noqa: BLE001 - a server restarting answers in many ways: try again
                logger.warning("no connection to the Prefect server (%s); trying again", exc)
                await asyncio.sleep(RECONNECT_S)
                continue
            if self.gpu.stopping.is_set():  # the stop came while it was taken: its claim was given back
                break
            self.gpu.taken(task_run.id)  # waiting for the GPU until its task says otherwise
            if await self._acquire_token(task_run.id):
                self._runs_task_group.start_soon(self._safe_submit_scheduled_task_run, task_run)
            else:
                self.gpu.settled(task_run.id)

    async def _safe_submit_scheduled_task_run(self, task_run: TaskRun) -> None:
        try:
            await super()._safe_submit_scheduled_task_run(task_run)
        finally:
            self.gpu.settled(task_run.id)  # also a run that never reached the task (its parameters unreadable)
            orphan = take_over(task_run.id)
            if orphan is not None:  # claimed, but its task never ran
                if self.gpu.stopping.is_set():
                    orphan.give_back()  # the worker stops: the parent queues the chunk again at once
                else:
                    orphan.close()  # the heartbeat stops, and the parent hands the chunk out again

    async def _next_task_run(self, base_url: str) -> TaskRun:
        """One task run off the server's queues, claimed in the job folder before it is acknowledged.

        Prefect's ``Subscription`` acknowledges a run as soon as it arrives; from the ack on the server has
        forgotten it, and a worker killed before its task wrote a claim would take the chunk with it (the parent
        sees neither a claim nor an outcome). With look-ahead a worker takes its next chunk right after one
        starts, just when a fault is as likely as any time, so the claim comes first here: killed before the
        ack, the server puts the run back in its queue; killed after, the claim's heartbeat goes stale and the
        parent hands the chunk out again."""
        subscription = Subscription(model=TaskRun, path="/task_runs/subscriptions/scheduled",
                                    keys=self.ordered_keys, client_id=self.client_id, base_url=base_url)
        try:
            await subscription._ensure_connected()
            receive = asyncio.ensure_future(subscription.websocket.recv())
            self._receiving = receive  # the stop may cancel it until something arrives, not after
            if self.gpu.stopping.is_set():  # the stop came while it connected, before there was a wait to cancel
                receive.cancel()
            try:
                message = await receive
            finally:
                self._receiving = None
            task_run = TaskRun.model_validate_json(message)
            claim = await self._claim(task_run)
            try:
                await subscription.websocket.send(json.dumps({"type": "ack"}))
            except BaseException:
                if claim is not None:  # not ours after all: the server keeps it; say so, so the parent does not wait
                    take_over(task_run.id)
                    claim.give_back()
                raise
            return task_run
        finally:
            if subscription._websocket is not None:
                try:
                    await subscription._connect.__aexit__(None, None, None)
                except Exception:  # noqa: BLE001 - the socket is done with either way
                    logger.debug("closing a chunk subscription failed", exc_info=True)

    async def _claim(self, task_run: TaskRun) -> ChunkClaim | None:
        """Write the claim of ``task_run``'s chunk (read from its parameters, as Prefect's worker reads them) and
        keep it for its task. None when the parameters cannot be read: the task fails on them as before."""
        task = next((t for t in self.tasks if t.task_key == task_run.task_key), None)
        parameters_id = getattr(task_run.state.state_details, "task_parameters_id", None) if task_run.state else None
        if task is None or parameters_id is None:
            return None
        try:
            store = await ResultStore(
                result_storage=await get_or_create_default_task_scheduling_storage()).aupdate_for_task(task)
            parameters = (await read_parameters(store, parameters_id)).get("parameters", {})
            chunk = unpack_chunk(parameters["chunk"])
            dispatch = Dispatch(**parameters["dispatch"])
            store = FrameStore(parameters["store_root"], chunk.job)
            return await asyncio.to_thread(self._write_claim, task_run.id, store, chunk.index, dispatch)
        except Exception:  # noqa: BLE001 - the task itself reports what is wrong with the run
            logger.warning("could not claim task run %s before taking it", task_run.id, exc_info=True)
            return None

    def _write_claim(self, run: object, store: FrameStore, index: int, dispatch: Dispatch) -> ChunkClaim:
        """Write a chunk's claim and keep it for its task, on a thread of its own.

        Kept on the same thread that published it, so no moment exists in which a published claim is neither kept
        (where the stop's handler gives it back) nor checked against ``stopping`` here. Kept later, on the event
        loop, a claim published just before a stop was missed by both and left to go stale: the parent waited out
        its heartbeat. The stop sets ``stopping`` before it gives claims back, so a claim kept after that look is
        given back here."""
        claim = ChunkClaim(store, index, dispatch, worker_id())
        hand_over(run, claim)
        if self.gpu.stopping.is_set():
            give_back_untaken()
        return claim


async def serve_chunks(lookahead_s: float = DEFAULT_LOOKAHEAD_S) -> None:
    """Run chunks until stopped (SIGTERM/SIGINT)."""
    worker = ChunkWorker(lookahead_s)
    try:
        await worker.astart()
    except (asyncio.CancelledError, KeyboardInterrupt):
        pass


def give_back_untaken() -> None:
    """Give back the claims of chunks this worker took whose task never carried the claim on."""
    for claim in take_over_all():
        try:
            claim.give_back()
        except OSError:  # the store is unreachable: the claim's heartbeat has stopped, so it goes stale instead
            logger.warning("could not give back chunk %d; it is handed out again once its claim is stale",
                           claim.index, exc_info=True)


def main(lookahead_s: float = DEFAULT_LOOKAHEAD_S) -> None:
    try:
        asyncio.run(serve_chunks(lookahead_s))
    finally:
        give_back_untaken()  # a chunk taken after the stop began, while the event loop wound down


if __name__ == "__main__":
    main()
