"""Chunks over an existing Dask cluster: Prefect's own Dask task runner (prefect-dask), pointed at a scheduler.

framefarm starts no cluster of its own: a studio that already runs Dask (``dask scheduler`` + ``dask worker`` per
GPU host, or a Kubernetes/SLURM deployment) gives its scheduler's address and every chunk task runs on a Dask
worker. Nothing else changes: each chunk still renders in a watched render process on the worker (hung work is
killed there), frames go to the shared store the job names, and the flow run (planning, verify, encode) stays where
it was started. So the workers need:

* framefarm installed (with the ``dask`` extra) and the same code version as the flow's side;
* the same store: ``--out`` must be a path every worker sees (shared disk) or an ``s3://`` URL;
* the Prefect API (``PREFECT_API_URL``) and a result storage every worker reaches, for the chunk cache;
* one Dask worker per GPU with one thread (``dask worker ADDRESS --nthreads 1`` under ``CUDA_VISIBLE_DEVICES=i``).
"""

from __future__ import annotations

import re

from framefarm.errors import InputError

# tcp://, tls://, ucx:// or inproc:// then host[:port]; a bare host:port is taken as tcp.
_ADDRESS = re.compile(r"^((tcp|tls|ucx|inproc)://)?[^\s/:]+(:\d{1,5})?$")


def dask_task_runner(address: str):
    """Prefect's ``DaskTaskRunner`` connected to the Dask scheduler at ``address`` (``tcp://host:8786``)."""
    address = address.strip()
    if not _ADDRESS.match(address):
        raise InputError("--dask", address, "is not a Dask scheduler address", "Example: --dask tcp://render-head:8786")
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise InputError("--dask", address, "needs prefect-dask, which is not installed",
                         'Install it: pip install -e ".[dask]"') from None
    return DaskTaskRunner(address=address)
