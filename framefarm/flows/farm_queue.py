"""Jobs on the farm: queue them as flow runs of the ``render-job/farm`` deployment, list them, pause, resume, cancel.

Priority is Prefect's work-queue priority (lower number first): a job submitted with ``--priority N`` goes to the
pool's queue ``priority-N``, created with priority N on first use, and a worker (``prefect worker start --pool
framefarm``) always takes the lowest-numbered queue's runs first. A job for later (``--after``) is a flow run
scheduled for that time. Nothing here schedules anything itself. The pool and deployment are made by
:mod:`framefarm.flows.farm_deployment`.

Pausing a job that has not started moves its run to ``Paused`` (workers skip it); resuming schedules it again.
Pausing a running job cancels its run (the worker stops it; finished frames stay in the store) and resuming it
starts a new run of the same job, which skips every finished frame.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling, Paused, Scheduled

from framefarm.errors import InputError
from framefarm.flows.farm_runs import DEPLOYMENT, POOL, read_run as _read, requeue


@dataclass(frozen=True)
class QueuedJob:
    """One job as the queue shows it."""

    run_id: str
    job: str
    state: str
    priority: int | None
    scheduled: str | None
    started: str | None
    out: str
    frames: int
    done: int

    @property
    def progress(self) -> float:
        return self.done / self.frames if self.frames else 0.0


def _queue_for(client, pool: str, priority: int) -> str:
    name = f"priority-{priority}"
    try:
        client.read_work_queue_by_name(name, work_pool_name=pool)
    except ObjectNotFound:
        client.create_work_queue(name=name, priority=priority, work_pool_name=pool)
    return name


def submit(job: Any, *, out: str, backend: str = "preview", chunk_size: int | None = None, priority: int = 10,
           after: dt.datetime | None = None, pool: str = POOL, fan_out: bool = False) -> str:
    """Queue a validated job as a flow run of the farm deployment. Returns the flow run id.

    With ``fan_out`` the run only plans, queues its chunks for every chunk worker (``framefarm chunk-worker``) at
    the job's priority, verifies and encodes; without it, the worker that takes the run renders every chunk.
    """
    from prefect.deployments import run_deployment

    if priority < 1:
        raise InputError("--priority", priority, "must be 1 or more", "1 runs first; the default is 10")
    with get_client(sync_client=True) as client:
        queue = _queue_for(client, pool, priority)
    # By reference, as the CLI renders: Prefect refuses more than 512 KB of parameters, and a Deforum camera export
    # makes a job of megabytes. The job folder lies in the farm's shared store, where every worker reads it.
    from framefarm.flows.job_ref import store_job

    run = run_deployment(
        f"render-job/{DEPLOYMENT}",
        parameters={"job": store_job(job, out), "backend": backend, "out": out, "chunk_size": chunk_size,
                    "fan_out": fan_out, "priority": priority},
        scheduled_time=after,
        timeout=0,  # queue it and return; a worker runs it
        work_queue_name=queue,
        tags=["framefarm", f"job:{job.name}", f"priority:{priority}", f"pool:{pool}"],
        as_subflow=False,
    )
    return str(run.id)


def farm_flow_runs(limit: int = 200) -> list[Any]:
    """Flow runs of the farm deployment, newest (expected start) first."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[DEPLOYMENT])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=limit,
        )


def list_jobs(limit: int = 200) -> list[QueuedJob]:
    """Jobs of the farm deployment, newest first, with progress from their frame stores."""
    from framefarm.flows.job_ref import job_fields
    from framefarm.storage import FrameStore

    jobs = []
    for run in farm_flow_runs(limit):
        out = run.parameters.get("out") or ""
        job = job_fields(run.parameters.get("job"), out)
        name = job.get("name", "?")
        frames = int(job.get("frames", 0))
        try:
            done = min(frames, FrameStore(out, name).count_records()) if out and name != "?" else 0
        except Exception:  # a store that can't be reached from here: show the run without progress
            done = 0
        priority = next((int(t.split(":", 1)[1]) for t in run.tags if t.startswith("priority:")), None)
        jobs.append(QueuedJob(
            run_id=str(run.id), job=name, state=run.state_name or "?", priority=priority,
            scheduled=run.expected_start_time.isoformat() if run.expected_start_time else None,
            started=run.start_time.isoformat() if run.start_time else None, out=out, frames=frames, done=done,
        ))
    return jobs


def eta_seconds(job: QueuedJob, now: dt.datetime | None = None) -> float | None:
    """Seconds left for a running job, from its frame rate so far (``None`` before the first frame)."""
    if job.state != "Running" or not job.started or job.done == 0:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    elapsed = (now - dt.datetime.fromisoformat(job.started)).total_seconds()
    return elapsed / job.done * (job.frames - job.done)


def cancel(run_id: str) -> str:
    with get_client(sync_client=True) as client:
        run = _read(client, run_id)
        client.set_flow_run_state(run.id, Cancelling(message="cancelled from framefarm"), force=True)
    return "Cancelling"


def pause(run_id: str) -> str:
    with get_client(sync_client=True) as client:
        run = _read(client, run_id)
        if run.state_name in ("Scheduled", "Late", "AwaitingRetry"):
            client.set_flow_run_state(run.id, Paused(message="paused from framefarm"), force=True)
            return "Paused"
        if run.state_name in ("Running", "Pending"):
            client.set_flow_run_state(run.id, Cancelling(message="paused from framefarm (frames kept)"), force=True)
            return "Cancelling"
    raise InputError("job", run_id, f"is {run.state_name}, nothing to pause")


def resume(run_id: str) -> str:
    """Schedule a paused run again, or start a new run of a stopped job (finished frames are skipped)."""
    with get_client(sync_client=True) as client:
        run = _read(client, run_id)
        if run.state_name == "Paused":
            client.set_flow_run_state(run.id, Scheduled(scheduled_time=dt.datetime.now(dt.timezone.utc)), force=True)
            return str(run.id)
    return requeue(run_id)
