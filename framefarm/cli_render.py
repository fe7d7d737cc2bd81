"""What ``framefarm render`` and ``framefarm demo`` do with a loaded job, in order:

1. every check that needs no Prefect (the job's files and models, the output folder): exit 2 within a second;
2. the job folder's lock (one render per job folder; ``--wait`` queues behind the holder);
3. the job stored in its folder (the flow gets a reference), Prefect's server, the flow run;
4. on SIGINT/SIGTERM, a stop rather than a failure: render processes, ffmpeg, then the server; exit 130 with the
   command that resumes.

The CLI's contract (``framefarm/cli.py``): the video's path is the last stdout line, progress goes to stderr.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from framefarm.animation.plan import stored_frames
from framefarm.cli_output import err, fail, quiet_prefect
from framefarm.errors import FramefarmError, InputError, WorkerPoolBroken

# Flow runs on a fresh process pool after a pool process died (--gpus), before the render fails.
POOL_RESTARTS = 2
# How long a stop waits for the flow to record its end on the Prefect server before the CLI exits anyway.
STOP_FLOW_WAIT_S = 30.0


def run_render(job, backend: str, out: str, chunk_size: int | None, gpus: str | None = None,
               dask: str | None = None, wait: bool = False) -> None:
    """Render ``job`` as the module docstring says; exits through :func:`framefarm.cli_output.fail` or ``typer.Exit``."""
    quiet_prefect()
    from framefarm.flows.stop import StopOnSignals, stop_requested

    # 1. Check everything that can be checked before Prefect starts.
    try:
        if gpus and dask:
            raise InputError("--dask", dask, "cannot be combined with --gpus",
                             "Run one Dask worker per GPU instead (see docs/farm.md)")
        _check_backend(backend)
        from framefarm.preflight import check_job, check_writable_folder

        check_job(job, backend)
        if "://" not in str(out):  # a local folder; a store URL is checked by taking its lock
            check_writable_folder("--out", str(out), out)
    except FramefarmError as exc:
        fail(exc)
    # 2. One render per job folder: the lock also proves the output folder is writable.
    lock, store = _lock_job_folder(job, out, wait)
    with lock, StopOnSignals() as signals:
        job_ref = _store_job(job, out)
        # 3. Prefect: the flows, a server, the run.
        try:
            flows = _flows(gpus, dask)
        except FramefarmError as exc:
            fail(exc)
        server = _start_prefect_server(stop_requested)
        if server is not None:
            atexit.register(server.stop)  # after Prefect's own exit handlers have sent what they still hold
        if signals.signal_name is None:
            keep = [server.process.pid] if server is not None and server.process is not None else []
            _run_flows(job, job_ref, flows, backend, out, chunk_size, store, signals, lock, keep)
        _exit_if_stopped(signals, store, job, lock)


def _check_backend(backend: str) -> None:
    from framefarm.renderers import get_renderer

    get_renderer(backend)  # an unknown backend is an input error before anything starts


def _unwritable(out: str, exc: OSError) -> InputError:
    return InputError("--out", str(out), f"cannot be written ({exc.strerror or exc})",
                      "Choose an output folder this user can write to, or fix its permissions")


def _lock_job_folder(job, out: str, wait: bool):
    import shlex

    from framefarm.storage import FrameStore
    from framefarm.storage.job_lock import JobLock

    def waiting(holder) -> None:
        err.print(f"waiting: {job.name} in {out} is being rendered by {holder.describe()}", highlight=False,
                  markup=False, soft_wrap=True)

    try:
        store = FrameStore(str(out), job.name)
        lock = JobLock(store, shlex.join(["framefarm", *sys.argv[1:]]))
        lock.acquire(wait=wait, on_wait=waiting)
        if lock.took_over is not None:
            err.print(f"note: took over the lock of a render that is gone: {lock.took_over.describe()}",
                      highlight=False, markup=False, soft_wrap=True)
        store.remove_unfinished_writes()  # left by a stopped or crashed run; nobody else writes while we hold the lock
    except FramefarmError as exc:
        fail(exc)
    except OSError as exc:
        fail(_unwritable(out, exc))
    return lock, store


def _store_job(job, out: str) -> str:
    from framefarm.flows.job_ref import store_job

    try:
        return store_job(job, str(out))  # by reference: Prefect refuses flow parameters past 512 KB
    except OSError as exc:
        fail(_unwritable(out, exc))


def _flows(gpus: str | None, dask: str | None) -> list:
    """The flow of each run; a run after a dead process pool (``--gpus``) gets a fresh pool."""
    from framefarm.flows.render import render_job

    if gpus:
        from framefarm.flows.gpu_runner import gpu_task_runner

        ids = gpus.split(",")
        first = render_job.with_options(task_runner=gpu_task_runner(ids))  # bad ids: an input error now
        # Each later run's pool (and its GPU-claims folder) is made only when a pool has died.
        return [first, *(lambda *a, **k: render_job.with_options(task_runner=gpu_task_runner(ids))(*a, **k)
                         for _ in range(POOL_RESTARTS))]
    if dask:
        from framefarm.flows.dask_runner import dask_task_runner

        return [render_job.with_options(task_runner=dask_task_runner(dask))]
    return [render_job]


def _start_prefect_server(stop_requested):
    from framefarm.flows.local_server import use_local_server

    try:
        timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
        return use_local_server(timeout, stop_requested)
    except RuntimeError as exc:
        fail(exc)


def _run_flows(job, job_ref: str, flows, backend: str, out: str, chunk_size: int | None, store, signals,
               lock, keep: list[int]) -> None:
    from framefarm.flows.stop import stop_requested

    result_box: dict = {}

    def run() -> None:
        with _no_local_heartbeats():
            _run_attempts()

    def _run_attempts() -> None:
        for attempt, flow in enumerate(flows):
            try:
                result_box["result"] = flow(job_ref, backend=backend, out=str(out), chunk_size=chunk_size)
            except WorkerPoolBroken as exc:
                # A pool process died (killed, out of host memory): its pool is gone, the finished frames are not.
                # Another flow run on a fresh pool renders what is missing, as a rerun by hand would.
                if attempt + 1 == len(flows) or stop_requested():
                    result_box["error"] = exc
                    return
                err.print(f"[yellow]a worker process died[/] ({escape(str(exc))[:300]}); resuming on a fresh "
                          f"process pool ({attempt + 1}/{len(flows) - 1})", highlight=False, soft_wrap=True)
            except BaseException as exc:  # handed to the main thread, which owns the exit code
                result_box["error"] = exc
                return
            else:
                return

    worker = threading.Thread(target=run, name="framefarm-render", daemon=True)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        bar = progress.add_task(f"{job.name}", total=stored_frames(job))
        worker.start()
        # The manifest is the truth about finished frames, so the bar counts its records (resumed frames included).
        while worker.is_alive() and signals.signal_name is None and lock.lost is None:
            worker.join(timeout=0.5)
            progress.update(bar, completed=min(stored_frames(job), store.count_records()))
        if signals.signal_name is not None or lock.lost is not None:
            _stop(worker, keep)
        progress.update(bar, completed=min(stored_frames(job), store.count_records()))
    if signals.signal_name is not None or lock.lost is not None:
        return
    if "error" in result_box:
        fail(result_box["error"])
    result = result_box["result"]
    err.print(f"{result.frames} frames ({result.rendered} rendered, {result.reused} reused) in {result.seconds:.1f} s")
    for video in (result.videos or {"": result.video}).values():  # one per variation of a job with variations
        typer.echo(video)


def _no_local_heartbeats():
    """Prefect settings for the flow run in this process: no flow-run heartbeats when its server is on this machine.

    Prefect's heartbeat thread sleeps in whole seconds and the flow run joins it at the end, so every run waited up
    to a second for it (half a 1-frame preview's flow run, measured). Heartbeats exist so a server can tell that a
    worker's run died; this run lives in the CLI, which a person watches, against a server on this machine (the
    CLI's own, which dies with it, or a ``prefect server start`` for quick iteration). A farm's server elsewhere
    keeps them.
    """
    import contextlib
    from urllib.parse import urlsplit

    from prefect.settings import get_current_settings, temporary_settings

    host = urlsplit(get_current_settings().api.url or "").hostname or ""
    if host not in {"127.0.0.1", "localhost", "::1"}:
        return contextlib.nullcontext()
    return temporary_settings(updates={"flows.heartbeat_frequency": None})


def _stop(worker: threading.Thread, keep: list[int]) -> None:
    """Stop the render in order: render processes, ffmpeg, then let the flow end (the server is stopped last, at
    exit). Every finished frame is kept, and nothing is recorded against the worker."""
    import logging

    from framefarm.flows.stop import stop_render_work

    # Each chunk in flight now ends "Failed(RenderStopped)" in Prefect's log: noise for a user who asked for it.
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    stop_render_work(keep)  # keep: Prefect's server, stopped last, at exit
    worker.join(timeout=STOP_FLOW_WAIT_S)


def _exit_if_stopped(signals, store, job, lock) -> None:
    import shlex

    done = min(stored_frames(job), store.count_records())
    command = shlex.join(["framefarm", *sys.argv[1:]])
    if lock.lost is not None:
        # Another render decided this one was dead and took the job folder over: two renders must not share it.
        err.print(f"[bold red]render failed[/] the lock of {escape(job.name)} was {escape(lock.lost)}; this render "
                  f"stopped with {done} of {stored_frames(job)} frames finished and kept", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if signals.signal_name is None:
        return
    err.print(f"stopped by {signals.signal_name}: {done} of {stored_frames(job)} frames are finished and kept. "
              f"Resume with:\n  {command}", highlight=False, soft_wrap=True, markup=False)
    raise typer.Exit(130)
