"""A GPU worker of the farm: a Prefect task worker that runs queued chunks, one at a time, highest priority first.

Start one per GPU (``framefarm chunk-worker``, ``CUDA_VISIBLE_DEVICES=i``). Two changes to Prefect's own
``TaskWorker``, both about when a task run leaves the server's queue:

* it subscribes to the priority levels in order (``render-chunk-p1`` first): Prefect's server then hands it the
  most urgent queued chunk (its ``MultiQueue`` tries the keys in the order the subscription lists them; Prefect's
  own worker sends them as an unordered set);
* it holds a subscription only while its GPU is free. Prefect's worker acknowledges the next task run while it
  is still busy with one, so a busy worker would sit on a chunk that an idle one could render, and a worker killed
  then would take that chunk with it. Closed between chunks, the socket never holds one: a run the server had in
  hand for it goes back to the front of its queue (the server's retry queue).
"""

from __future__ import annotations

import asyncio
import logging

from prefect.client.schemas.objects import TaskRun
from prefect.client.subscriptions import Subscription
from prefect.settings import get_current_settings
from prefect.task_worker import TaskWorker

from framefarm.flows.chunk_tasks import CHUNK_TASKS, PRIORITY_LEVELS

logger = logging.getLogger("framefarm.chunk_worker")
RECONNECT_S = 1.0


class ChunkWorker(TaskWorker):
    """Prefect's task worker, taking one chunk at a time from the priority levels in order."""

    def __init__(self) -> None:
        tasks = [CHUNK_TASKS[level] for level in range(1, PRIORITY_LEVELS + 1)]
        super().__init__(*tasks, limit=1)
        self.ordered_keys = [task.task_key for task in tasks]

    async def _subscribe_to_task_scheduling(self) -> None:
        base_url = get_current_settings().api.url
        if base_url is None:
            raise ValueError("PREFECT_API_URL must name the farm's Prefect server: chunk workers need one")
        logger.info("taking chunks of priority 1…%d, one at a time", PRIORITY_LEVELS)
        while True:
            await self._limiter.acquire()  # wait for the GPU to be free …
            self._limiter.release()
            try:
                task_run = await self._next_task_run(base_url)  # … then take one chunk off the server's queues
            except Exception as exc:  # noqa: BLE001 - a server restarting answers in many ways: try again
                logger.warning("no connection to the Prefect server (%s); trying again", exc)
                await asyncio.sleep(RECONNECT_S)
                continue
            if await self._acquire_token(task_run.id):
                self._runs_task_group.start_soon(self._safe_submit_scheduled_task_run, task_run)

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


async def serve_chunks() -> None:
    """Run chunks until stopped (SIGTERM/SIGINT)."""
    worker = ChunkWorker()
    try:
        await worker.astart()
    except (asyncio.CancelledError, KeyboardInterrupt):
        pass


def main() -> None:
    asyncio.run(serve_chunks())


if __name__ == "__main__":
    main()
