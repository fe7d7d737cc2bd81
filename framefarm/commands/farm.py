"""Farm commands: set up the pool and deployment on a Prefect server, submit jobs, watch and steer the queue.

They talk to the Prefect server named by ``PREFECT_API_URL`` (``docker compose up`` starts one on :4200).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from framefarm.flows.gpu_slot import DEFAULT_LOOKAHEAD_S


def _parse_after(text: str | None) -> dt.datetime | None:
    from framefarm.errors import InputError

    if text is None:
        return None
    now = dt.datetime.now().astimezone()
    try:
        if len(text) <= 5 and ":" in text:  # "22:00": the next time the clock shows it
            hour, minute = (int(x) for x in text.split(":"))
            when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            return when if when > now else when + dt.timedelta(days=1)
        when = dt.datetime.fromisoformat(text)
        return when if when.tzinfo else when.astimezone()
    except ValueError:
        raise InputError("--after", text, "is not a time", "Use HH:MM (next occurrence) or an ISO date-time") from None


def farm_setup(pool: Annotated[str, typer.Option(help="Work pool name.")] = "framefarm") -> None:
    """Create the work pool and the render deployment on the Prefect server (safe to repeat)."""
    from framefarm.flows.farm_deployment import setup

    deployment = setup(pool)
    typer.echo(f"pool {pool!r} and deployment render-job/farm ready ({deployment}); start workers with:\n"
               f"  prefect worker start --pool {pool} --type process --limit 1")


def submit(
    job_file: Path,
    priority: Annotated[int, typer.Option(help="1 runs first.")] = 10,
    after: Annotated[Optional[str], typer.Option(help="Not before HH:MM or an ISO date-time.")] = None,
    out: Annotated[Path, typer.Option(help="Output root (shared by the workers).")] = Path("renders"),
    backend: Annotated[str, typer.Option(help="preview or diffusers.")] = "preview",
    chunk_size: Annotated[Optional[int], typer.Option(min=1)] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field.")] = None,
    fan_out: Annotated[bool, typer.Option("--fan-out", help="Spread the job's chunks over every chunk worker "
                                          "(framefarm chunk-worker) instead of the worker that takes the job.")
                       ] = False,
) -> None:
    """Queue a job on the farm; prints the flow run id last."""
    from framefarm.cli_output import fail
    from framefarm.errors import FramefarmError
    from framefarm.flows.farm_queue import submit as submit_job
    from framefarm.job import load_job

    try:
        job = load_job(job_file, set_ or [])
        run_id = submit_job(job, out=str(out.resolve()) if "://" not in str(out) else str(out), backend=backend,
                            chunk_size=chunk_size, priority=priority, after=_parse_after(after),
                            fan_out=fan_out)
    except FramefarmError as exc:
        fail(exc)
    typer.echo(run_id)


def chunk_worker(
    lookahead_s: Annotated[float, typer.Option(
        "--lookahead-s", min=0,
        help="Take the next chunk when the current one has this many seconds left, so the hand-out overlaps "
             "GPU work (at most one chunk waits). 0: take a chunk only when the GPU is free.")
    ] = DEFAULT_LOOKAHEAD_S,
) -> None:
    """Render queued chunks of fanned-out jobs, one at a time, priority 1 first: start one per GPU
    (CUDA_VISIBLE_DEVICES=i) with PREFECT_API_URL naming the farm's server."""
    from framefarm.flows.chunk_worker import main

    main(lookahead_s)


def queue(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Jobs on the farm with state, progress and ETA."""
    from rich.console import Console
    from rich.table import Table

    from framefarm.flows.farm_queue import eta_seconds, list_jobs

    jobs = list_jobs()
    if as_json:
        typer.echo(json.dumps([{**job.__dict__, "progress": job.progress, "eta_s": eta_seconds(job)}
                               for job in jobs], indent=2))
        return
    table = Table(title="framefarm queue")
    for column in ("run", "job", "state", "prio", "frames", "progress", "ETA"):
        table.add_column(column)
    for job in jobs:
        eta = eta_seconds(job)
        table.add_row(job.run_id[:8], job.job, job.state, str(job.priority or ""), f"{job.done}/{job.frames}",
                      f"{job.progress:4.0%}", f"{eta / 60:.1f} min" if eta is not None else "")
    Console().print(table)


def _steer(action: str, run_id: str) -> None:
    from framefarm.cli_output import fail
    from framefarm.errors import FramefarmError
    from framefarm.flows import farm_queue

    actions = {"cancel": farm_queue.cancel, "pause": farm_queue.pause, "resume": farm_queue.resume,
               "requeue": farm_queue.requeue}
    try:
        typer.echo(actions[action](run_id))
    except FramefarmError as exc:
        fail(exc)


def cancel(run_id: str) -> None:
    """Cancel a job (finished frames stay)."""
    _steer("cancel", run_id)


def pause(run_id: str) -> None:
    """Pause a queued job, or stop a running one so it can resume later."""
    _steer("pause", run_id)


def resume(run_id: str) -> None:
    """Resume a paused or stopped job (finished frames are skipped)."""
    _steer("resume", run_id)


def requeue(run_id: str) -> None:
    """Run a finished, failed or cancelled job again as a new run."""
    _steer("requeue", run_id)


def register(app: typer.Typer) -> None:
    app.command("farm-setup")(farm_setup)
    app.command()(submit)
    app.command("chunk-worker")(chunk_worker)
    app.command()(queue)
    for command in (cancel, pause, resume, requeue):
        app.command()(command)
