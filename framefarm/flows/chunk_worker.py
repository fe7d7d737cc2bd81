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
and the parent queues it again at once); the chunk on the GPU is left to finish, as before look-ahead.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from prefect.client.schemas.objects import TaskRun
from prefect.client.subscriptions import Subscription
from prefect.settings import get_current_settings
from prefect.task_worker import TaskWorker

from framefarm.flows.chunk_tasks import CHUNK_TASKS, PRIORITY_LEVELS
from framefarm.flows.gpu_slot import DEFAULT_LOOKAHEAD_S, GPU

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

    def handle_sigterm(self, signum: int, frame: object) -> None:
        # Set first, so a chunk waiting for the GPU is given back rather than rendered while the process exits.
        self.gpu.stopping.set()
        super().handle_sigterm(signum, frame)

    async def _subscribe_to_task_scheduling(self) -> None:
        base_url = get_current_settings().api.url
        if base_url is None:
            raise ValueError("PREFECT_API_URL must name the farm's Prefect server: chunk workers need one")
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C stops like SIGTERM: asyncio's own handler would cancel the loop and leave a chunk waiting for
            # the GPU to render on while the process winds down.
            signal.signal(signal.SIGINT, self.handle_sigterm)
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
            except Exception as exc:  # noqa: BLE001 - a server restarting answers in many ways: try again
                logger.warning("no connection to the Prefect server (%s); trying again", exc)
                await asyncio.sleep(RECONNECT_S)
                continue
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

    async def _next_task_run(self, base_url: str) -> TaskRun:
        subscription = Subscription(model=TaskRun, path="/task_runs/subscriptions/scheduled",
                                    keys=self.ordered_keys, client_id=self.client_id, base_url=base_url)
        try:
            return await subscription.__anext__()  # reconnects by itself while the server restarts
        finally:
            if subscription._websocket is not None:
                try:
                    await subscription._connect.__aexit__(None, None, None)
                except Exception:  # noqa: BLE001 - the socket is done with either way
                    logger.debug("closing a chunk subscription failed", exc_info=True)


async def serve_chunks(lookahead_s: float = DEFAULT_LOOKAHEAD_S) -> None:
    """Run chunks until stopped (SIGTERM/SIGINT)."""
    worker = ChunkWorker(lookahead_s)
    try:
        await worker.astart()
    except (asyncio.CancelledError, KeyboardInterrupt):
        pass


def main(lookahead_s: float = DEFAULT_LOOKAHEAD_S) -> None:
    asyncio.run(serve_chunks(lookahead_s))


if __name__ == "__main__":
    main()
