"""The ``framefarm`` command.

Contract (other tools and later checks rely on it):

* the finished video's path is the last line of stdout of ``render`` and ``demo``; progress goes to stderr;
* exit code 0 on success, 2 on invalid input (message on stderr, no traceback), 1 on a failure during work.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from framefarm.errors import FramefarmError, InputError, WorkerPoolBroken

app = typer.Typer(
    name="framefarm",
    help="Batch render farm for Stable Diffusion animation: Deforum keyframes, AnimateDiff, video-to-video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
# Flow runs on a fresh process pool after a pool process died (--gpus), before the render fails.
POOL_RESTARTS = 2
DEMO_PRESET = "zoom-tunnel"

JobArg = Annotated[Path, typer.Argument(help="Job file (TOML or JSON).", show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: --set motion.zoom='0:(1.02)'.")]
ChunkOpt = Annotated[Optional[int], typer.Option("--chunk-size", min=1, help="Frames per chunk task.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="Renderer: preview (weight-free) or diffusers.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output root: frames land in OUT/<job>/frames/.")]


def quiet_prefect() -> None:
    # Prefect's per-task INFO lines would scroll the progress bar away; warnings and errors still show.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # The ephemeral server would try to send telemetry; render boxes are often offline, and it is noise.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect gives its ephemeral server 20 s to come up; a 2-core render box that is already decoding or
    # encoding often needs longer (measured: 23 s under a parallel test run), and the render would fail
    # before its first frame. A long wait costs nothing when the server is quick.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


# An error message is for a person: a library's error that quotes a whole request (a job of a megabyte) is cut here.
MAX_ERROR_CHARS = 2000


def _shorten(text: str) -> str:
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return f"{text[:MAX_ERROR_CHARS]} … ({len(text) - MAX_ERROR_CHARS} more characters left out)"


def fail(exc: BaseException) -> NoReturn:
    """Report an error the CLI way and exit: 2 for invalid input, 1 for a failure during work."""
    if isinstance(exc, InputError):
        err.print(f"[bold red]invalid input[/] {escape(_shorten(str(exc)))}", highlight=False, markup=True,
                  soft_wrap=True)
        raise typer.Exit(2)
    err.print(f"[bold red]render failed[/] {escape(_shorten(str(exc)))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _render(job, backend: str, out: Path, chunk_size: int | None, gpus: str | None = None,
            dask: str | None = None, wait: bool = False) -> None:
    """Render ``job`` in order: 1. checks that need no Prefect (exit 2 within a second), 2. the job folder's lock,
    3. Prefect's server and the flow, stopped cleanly on SIGINT/SIGTERM."""
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
            _run_flows(job, job_ref, flows, backend, out, chunk_size, store, signals, lock)
        _exit_if_stopped(signals, store, job, lock)


def _check_backend(backend: str) -> None:
    from framefarm.renderers import get_renderer

    get_renderer(backend)  # an unknown backend is an input error before anything starts


def _unwritable(out: Path, exc: OSError) -> InputError:
    return InputError("--out", str(out), f"cannot be written ({exc.strerror or exc})",
                      "Choose an output folder this user can write to, or fix its permissions")


def _lock_job_folder(job, out: Path, wait: bool):
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
    except FramefarmError as exc:
        fail(exc)
    except OSError as exc:
        fail(_unwritable(out, exc))
    return lock, store


def _store_job(job, out: Path) -> str:
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


def _run_flows(job, job_ref: str, flows, backend: str, out: Path, chunk_size: int | None, store, signals,
               lock) -> None:
    from framefarm.flows.stop import stop_requested

    result_box: dict = {}

    def run() -> None:
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
        bar = progress.add_task(f"{job.name}", total=job.frames)
        worker.start()
        # The manifest is the truth about finished frames, so the bar counts its records (resumed frames included).
        while worker.is_alive() and signals.signal_name is None and lock.lost is None:
            worker.join(timeout=0.5)
            progress.update(bar, completed=min(job.frames, store.count_records()))
        if signals.signal_name is not None or lock.lost is not None:
            _stop(worker)
        progress.update(bar, completed=min(job.frames, store.count_records()))
    if signals.signal_name is not None or lock.lost is not None:
        return
    if "error" in result_box:
        fail(result_box["error"])
    result = result_box["result"]
    err.print(f"{result.frames} frames ({result.rendered} rendered, {result.reused} reused) in {result.seconds:.1f} s")
    typer.echo(result.video)


# How long a stop waits for the flow to record its end on the Prefect server before the CLI exits anyway.
STOP_FLOW_WAIT_S = 30.0


def _stop(worker: threading.Thread) -> None:
    """Stop the render in order: render processes, ffmpeg, then let the flow end (the server is stopped last, at
    exit). Every finished frame is kept, and nothing is recorded against the worker."""
    import logging

    from framefarm.flows.stop import stop_render_work

    # Each chunk in flight now ends "Failed(RenderStopped)" in Prefect's log: noise for a user who asked for it.
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    stop_render_work()
    worker.join(timeout=STOP_FLOW_WAIT_S)


def _exit_if_stopped(signals, store, job, lock) -> None:
    import shlex

    done = min(job.frames, store.count_records())
    command = shlex.join(["framefarm", *sys.argv[1:]])
    if lock.lost is not None:
        # Another render decided this one was dead and took the job folder over: two renders must not share it.
        err.print(f"[bold red]render failed[/] the lock of {escape(job.name)} was {escape(lock.lost)}; this render "
                  f"stopped with {done} of {job.frames} frames finished and kept", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if signals.signal_name is None:
        return
    err.print(f"stopped by {signals.signal_name}: {done} of {job.frames} frames are finished and kept. "
              f"Resume with:\n  {command}", highlight=False, soft_wrap=True, markup=False)
    raise typer.Exit(130)


@app.command()
def render(
    job_file: JobArg,
    backend: BackendOpt = "preview",
    out: OutOpt = Path("renders"),
    chunk_size: ChunkOpt = None,
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="One process per GPU id, e.g. 0,1,2,3.")] = None,
    dask: Annotated[Optional[str], typer.Option(
        "--dask", help="Run chunks on an existing Dask cluster, e.g. tcp://render-head:8786.")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="When another render holds the job folder, wait for it instead of exiting 2.")] = False,
    set_: SetOpt = None,
) -> None:
    """Render a job and print the finished video's path (last line of stdout)."""
    from framefarm.job import load_job

    try:
        job = load_job(job_file, set_ or [])
    except FramefarmError as exc:
        fail(exc)
    _render(job, backend, out, chunk_size, gpus, dask, wait)


@app.command()
def plan(
    job_file: JobArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    backend: BackendOpt = "preview",
    chunk_size: ChunkOpt = None,
    frames: Annotated[Optional[str], typer.Option("--frames", help="Also list per-frame values for frames A:B.")] = None,
    set_: SetOpt = None,
) -> None:
    """Show how a job splits into chunks (frame ranges, seeds, keys) without rendering; --frames A:B adds values."""
    from framefarm.animation.plan import plan_job
    from framefarm.flows.tasks import input_hashes, resolve_job_batch_size
    from framefarm.job import load_job
    from framefarm.renderers import get_renderer

    try:
        job, _ = resolve_job_batch_size(load_job(job_file, set_ or []), None, backend)
        the_plan = plan_job(job, renderer=get_renderer(backend).id, chunk_size=chunk_size,
                            input_hashes=input_hashes(job, backend))
    except FramefarmError as exc:
        fail(exc)
    summary = the_plan.summary()
    rows = _frame_rows(job, frames) if frames else None
    if as_json:
        typer.echo(json.dumps({**summary, "frame_values": rows} if rows is not None else summary, indent=2))
        return
    table = Table(title=f"{job.name}: {job.kind}, {job.frames} frames, {job.width}x{job.height} @ {job.fps:g} fps")
    for column in ("chunk", "frames", "seeds", "key"):
        table.add_column(column)
    for chunk in summary["chunks"]:
        seeds = chunk["seeds"]
        shown = ", ".join(map(str, seeds[:4])) + (" …" if len(seeds) > 4 else "")
        table.add_row(str(chunk["index"]), f"{chunk['start']}–{chunk['stop'] - 1}", shown, chunk["key"][:12])
    Console().print(table)
    if rows:
        _print_frame_rows(job, rows)


def _frame_rows(job, span: str) -> list[dict]:
    from framefarm.animation.schedules import frame_table

    try:
        start_text, _, stop_text = span.partition(":")
        start = int(start_text or 0)
        stop = min(job.frames, int(stop_text) if stop_text else job.frames)
        if not 0 <= start < stop:
            raise ValueError
    except ValueError:
        fail(InputError("--frames", span, "is not a frame range inside the job",
                        f"Use A:B with 0 <= A < B <= {job.frames}, e.g. 0:24"))
    return frame_table(job, range(start, stop))


def _print_frame_rows(job, rows: list[dict]) -> None:
    # The columns a reader checks first: camera for the job's mode, then what drives the diffusion.
    camera = ["zoom", "angle", "translation_x", "translation_y"]
    if getattr(job, "animation_mode", "2D") == "3D":
        camera = ["translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z"]
    columns = ["frame", "seed", *camera, "strength", "cfg_scale", "steps", "prompt"]
    columns = [c for c in columns if c in rows[0]]
    table = Table(title=f"{job.name}: per-frame values")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    Console().print(table)


@app.command()
def demo(
    preset: Annotated[str, typer.Option("--preset", help="Preset to render.")] = DEMO_PRESET,
    out: OutOpt = Path("renders"),
    set_: SetOpt = None,
) -> None:
    """Render a built-in preset with the weight-free preview renderer; prints the video's path last."""
    from framefarm.job import job_from_preset

    try:
        job = job_from_preset(preset, set_ or [])
    except FramefarmError as exc:
        fail(exc)
    _render(job, "preview", out, None)


@app.command()
def presets(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the shipped presets (use one with preset = "name" in a job file)."""
    from framefarm.presets import preset_names, preset_summary

    rows = [preset_summary(name) for name in preset_names()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="framefarm presets")
    for column in ("name", "kind", "size", "fps", "frames", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["kind"], row["size"], f"{row['fps']:g}", str(row["frames"]), row["description"])
    Console().print(table)


@app.command()
def validate(job_file: JobArg, set_: SetOpt = None) -> None:
    """Check a job file and print the resolved job (preset and overrides applied) as JSON."""
    from framefarm.job import load_job

    try:
        job = load_job(job_file, set_ or [])
    except FramefarmError as exc:
        fail(exc)
    typer.echo(json.dumps(job.model_dump(mode="json"), indent=2))


def _register_extra_commands() -> None:
    from framefarm.commands import register_all

    register_all(app)


_register_extra_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted: finished frames are kept; run the same command again to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
