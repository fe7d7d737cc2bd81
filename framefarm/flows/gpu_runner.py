"""A process-per-GPU task runner for one flow on a multi-GPU host.

Prefect's ``ProcessPoolTaskRunner`` with one process per GPU, each pinned to its GPU with ``CUDA_VISIBLE_DEVICES``
before anything imports torch (processes are spawned, not forked, so no CUDA state is inherited). Each process then
keeps its own loaded pipeline across the chunks it takes. Why processes and not threads: one CUDA context per
process keeps GPUs from contending on one Python interpreter (GIL, allocator, a crash taking all GPUs down), and a
dead GPU process fails its chunk, not the flow. Across machines, use one Prefect worker per GPU instead.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Sequence

from prefect.task_runners import ProcessPoolTaskRunner

from framefarm.errors import InputError


def _pin_gpu(gpus: tuple[str, ...], claims: str) -> None:
    # Ctrl-C in a terminal reaches every process of the group: a worker must not die of it mid-chunk (a traceback
    # per worker, and a pool the CLI would wait on); the CLI stops the render and ends the pool itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Runs once in each new worker process, before any task: claim the first GPU no other process has claimed.
    # Claims are files created with O_EXCL (atomic), because Prefect pickles the runner's arguments into each
    # process, and queues or manager proxies cannot be pickled that way.
    for gpu in gpus:
        try:
            os.close(os.open(os.path.join(claims, f"gpu-{gpu}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        return
    raise RuntimeError(f"more worker processes than GPUs {list(gpus)}")


def gpu_task_runner(gpus: Sequence[str]) -> ProcessPoolTaskRunner:
    """A task runner with one process per GPU id in ``gpus`` (``["0", "1"]``), each pinned to its GPU."""
    gpus = tuple(str(g).strip() for g in gpus if str(g).strip())
    if not gpus or len(set(gpus)) != len(gpus):
        raise InputError("--gpus", ",".join(gpus), "needs distinct GPU ids", "Example: --gpus 0,1,2,3")
    claims = tempfile.mkdtemp(prefix="framefarm-gpu-claims-")
    return ProcessPoolTaskRunner(max_workers=len(gpus), initializer=_pin_gpu, initargs=(gpus, claims))
