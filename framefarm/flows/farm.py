"""The farm on Prefect's own server, in two modules: :mod:`framefarm.flows.farm_deployment` sets up the work pool
and the ``render-job/farm`` deployment; :mod:`framefarm.flows.farm_queue` queues jobs on it and lists and steers them
(priorities, pause, resume, cancel). This module re-exports both, for code that imports them from here.
"""

from __future__ import annotations

from framefarm.flows.farm_deployment import ENTRYPOINT, setup
from framefarm.flows.farm_queue import QueuedJob, cancel, eta_seconds, list_jobs, pause, resume, submit
from framefarm.flows.farm_runs import DEPLOYMENT, POOL, requeue

__all__ = ["DEPLOYMENT", "ENTRYPOINT", "POOL", "QueuedJob", "cancel", "eta_seconds", "list_jobs", "pause", "requeue",
           "resume", "setup", "submit"]
