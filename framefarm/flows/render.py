"""The render flow: plan → prepare → render chunks → verify → encode.

Runs in-process with Prefect's ephemeral server for a local render (nothing to start), or on a Prefect server with
workers. A rerun of the same job skips finished chunks (Prefect's persisted results, keyed by the chunk's hash) and
finished frames inside a chunk (the manifest); the verify step makes the two agree.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.states import Cancelled
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from framefarm.animation.plan import plan_job
from framefarm.errors import InputError, RenderError, RenderStopped, WorkerPoolBroken
from framefarm.job import validate_job
from framefarm.flows.tasks import ChunkResult, encode_video, prepare_sources, render_chunk, verify_frames
from framefarm.job_inputs import input_hashes, resolve_job_batch_size
from framefarm.flows.job_ref import is_job_ref, load_job_ref, ref_name
from framefarm.flows.stop import raise_if_stopped, stop_requested
from framefarm.flows.summary import summary_markdown
from framefarm.flows.window import RenderPaused, pool_paused_check
from framefarm.renderers import get_renderer
from framefarm.storage import FrameStore


# Chunks in flight at once: enough to overlap PNG writes and reads with rendering on a CPU box; a GPU worker
# renders one chunk at a time anyway (the GPU is the scarce resource), so more only adds memory.
DEFAULT_PARALLEL_CHUNKS = 4
PROGRESS_INTERVAL_S = 2.0


@dataclass(frozen=True)
class RenderResult:
    """The outcome of a render: where the video is and what the run did."""

    job: str
    video: str
    frames: int
    rendered: int
    reused: int
    seconds: float
    chunks: tuple[ChunkResult, ...] = ()
    videos: dict[str, str] | None = None  # a job with variations: each variation's video by its name (video: the first)


def _run_chunks(plan, chunks, job, backend: str, out: str) -> tuple[list[ChunkResult], list[tuple[int, str]]]:
    """Submit chunk tasks, at most ``farm.max_parallel_chunks`` at a time; collect results and failures.

    A chunk whose frames are not all in the manifest bypasses Prefect's cache (``refresh_cache``): a cached result
    says the chunk once finished, the manifest says whether its frames are still there. They must agree.
    """
    done = FrameStore(out, job.name).done_frames(plan.frame_keys)
    task = render_chunk.with_options(
        retries=job.farm.chunk_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=job.farm.retry_delay_seconds)(job.farm.chunk_retries)
        if job.farm.chunk_retries else 0,
    )
    limit = job.farm.max_parallel_chunks or DEFAULT_PARALLEL_CHUNKS
    # A chain (Deforum on a renderer that reads the previous frame) is one sequence per shot: chunk k+1 of a shot
    # starts from the last frame of chunk k, so a shot's chunks run one at a time, in order, and a failed chunk
    # stops the shot's later ones. Different shots run side by side, within the limit (docs/deforum_chain.md).
    sequential = plan.chained and getattr(get_renderer(backend), "reads_previous_frames", False)
    busy_shots: set[int] = set()
    redo = task.with_options(refresh_cache=True)
    pending = list(chunks)
    running: dict = {}
    results: list[ChunkResult] = []
    failures: list[tuple[int, str]] = []
    progress = create_progress_artifact(0.0, description=f"{job.name}: chunks finished")
    last_update = time.monotonic()
    pool_paused = pool_paused_check()
    stopped = False
    # quote(): Prefect would otherwise walk every per-frame value of the chunk looking for futures. Dask, though,
    # takes the quote for a plain tuple (it is a namedtuple) and hands the task a tuple: there values go unquoted.
    wrap = quote if not _on_dask() else (lambda value: value)
    while pending or running:
        if pending and pool_paused is not None and not stopped and pool_paused():
            stopped = True  # outside the render window: finish the chunks in hand, start no new ones
        while (pending and not stopped and not stop_requested() and len(running) < limit
               and len(failures) < job.farm.error_budget):
            # The first pending chunk whose shot has none in flight (any chunk when frames are independent).
            chunk = next((c for c in pending if not sequential or c.shot not in busy_shots), None)
            if chunk is None:
                break
            pending.remove(chunk)
            busy_shots.add(chunk.shot)
            complete = all(frame in done for frame in chunk.frames)
            running[(task if complete else redo).submit(wrap(chunk), wrap(job), backend, out)] = chunk
        if not running:
            break  # budget spent and nothing left in flight
        future = next(as_completed(list(running)))
        chunk = running.pop(future)
        busy_shots.discard(chunk.shot)
        try:
            result = future.result()
        except InputError:
            raise  # the job itself is wrong: no point rendering its other chunks
        except RenderStopped:
            continue  # the user's stop: not a failure; the chunks still running stop as well
        except Exception as exc:
            failures.append((chunk.index, f"{type(exc).__name__}: {exc}"))
            if sequential:  # later frames of the shot would start from a frame that does not exist
                pending = [c for c in pending if c.shot != chunk.shot]
        else:
            # A chunk served from Prefect's cache returns its first run's result: it rendered nothing now.
            cached = future.state.name == "Cached"
            results.append(replace(result, rendered=(), seconds=0.0) if cached else result)
        finished = len(results) + len(failures)
        # Each update is an API call (~50 ms): report every PROGRESS_INTERVAL_S at most, and at the end.
        if finished == len(chunks) or time.monotonic() - last_update >= PROGRESS_INTERVAL_S:
            update_progress_artifact(progress, 100.0 * finished / len(chunks))
            last_update = time.monotonic()
    raise_if_stopped(f"{len(pending)} more chunk(s) of {job.name}")
    if stopped and pending:
        _requeue_for_later(job, len(pending))
    return results, failures


def _on_dask() -> bool:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    return type(runner).__module__.startswith("prefect_dask")


def _requeue_for_later(job, chunks_left: int) -> None:
    """Queue this run's job again (it waits in the paused pool until the window reopens) and end this run."""
    from prefect.runtime import flow_run

    from framefarm.flows.farm_runs import requeue

    new_run = requeue(str(flow_run.id))
    raise RenderPaused(f"{job.name}: the work pool was paused (outside its render window) with {chunks_left} "
                       f"chunk(s) to go; finished frames are kept and run {new_run} resumes the job when it reopens")


def _raise_for_failures(job, failures: list[tuple[int, str]]) -> None:
    if not failures:
        return
    detail = "; ".join(f"chunk {index}: {error}" for index, error in sorted(failures)[:5])
    spent = " (error budget spent: remaining chunks not started)" if len(failures) >= job.farm.error_budget else ""
    # A dead pool process fails every chunk in flight, and every later submission, with BrokenProcessPool: the
    # pool, not the chunks, is what failed, and a fresh pool can resume (framefarm/cli.py does).
    broken = any("BrokenProcessPool" in error for _, error in failures)
    raise (WorkerPoolBroken if broken else RenderError)(
        f"{len(failures)} chunk(s) of {job.name} failed{spent}: {detail}. Finished frames are kept; "
        "run the job again to resume")


def _run_name() -> str:
    from prefect.runtime import flow_run

    job = flow_run.parameters.get("job")
    if is_job_ref(job):
        return f"render-{ref_name(job)}"
    name = job.get("name") if isinstance(job, Mapping) else getattr(job, "name", "job")
    return f"render-{name}"


def _write_report(out: str, job_name: str, results: list[ChunkResult]) -> str | None:
    """Write report.html beside the video. A report is a view of finished work: if it fails, the render has still
    succeeded, so the failure is logged and the video is kept."""
    from framefarm.report import write_report

    try:
        return write_report(out, job_name, chunk_timings=results)
    except Exception as exc:  # noqa: BLE001 - any failure of the view must not fail the render
        get_run_logger().warning("report.html not written: %s", exc)
        return None


def _farm_lock(job, out: str):
    """The job folder's lock, taken by a run on the farm (a deployment run) for its whole run; ``None`` elsewhere:
    the CLI takes the same lock itself before it starts the flow (framefarm/cli_render.py).

    The job's parent run holds it, not the chunks: the chunks of one run share it, wherever they render. A parent
    killed with its worker leaves a stale lock (its process gone, or from another host its heartbeat older than
    the lock's ttl), which the next run of the job takes over.
    """
    from prefect.context import FlowRunContext

    from framefarm.flows.tasks import worker_id
    from framefarm.storage.job_lock import JobLock

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    if run is None or run.deployment_id is None:
        return None
    lock = JobLock(FrameStore(out, job.name), f"farm run {run.id} on {worker_id()}")
    lock.acquire()  # another render of this job folder: JobLocked, an InputError (this run fails, not retried)
    if lock.took_over is not None:
        get_run_logger().warning("took over the lock of a render that is gone: %s", lock.took_over.describe())
    return lock


@flow(name="render-job", validate_parameters=False, flow_run_name=_run_name)
def render_job(job: Any, backend: str = "preview", out: str = "renders", chunk_size: int | None = None,
               fan_out: bool = False, priority: int = 10) -> RenderResult:
    """Render a validated job into ``out/<job>/frames`` and an MP4 beside them.

    Args:
        job: a reference to a job stored in its job folder (``framefarm.flows.job_ref.store_job``: any size, what
            the CLI passes), a validated job spec (``framefarm.job.load_job``), or its JSON dict (deployments).
        backend: renderer name (``preview`` or ``diffusers``).
        out: store root: a local folder or an fsspec URL.
        chunk_size: frames per chunk task (does not change the frames, only the unit of retry and caching).
        fan_out: queue the chunks for every chunk worker of the farm (``framefarm chunk-worker``) instead of
            rendering them in this flow run (needs a Prefect server).
        priority: the job's priority (1 first), which its chunks keep in the chunk workers' queues.
    """
    started = time.perf_counter()
    job_ref = job if is_job_ref(job) else None
    if is_job_ref(job):
        job = load_job_ref(job, out)
    elif isinstance(job, Mapping):  # from a deployment: parameters arrive as JSON
        job = validate_job(job, source="deployment parameters")
    lock = _farm_lock(job, out)
    try:
        return _render(job, job_ref, backend, out, chunk_size, fan_out, priority, lock, started)
    finally:
        if lock is not None:
            lock.release()


def _render(job, job_ref, backend, out, chunk_size, fan_out, priority, lock, started) -> RenderResult:
    """The render flow's steps, once the job is loaded (and, on the farm, its folder locked)."""
    # 1. Plan (pure and cheap) and record what is about to be rendered.
    renderer = get_renderer(backend)
    job, batch_choice = resolve_job_batch_size(job, out, backend)  # batch_size "auto": chosen once per job
    plan = plan_job(job, renderer=renderer.id, chunk_size=chunk_size, input_hashes=input_hashes(job, backend))
    store = FrameStore(out, job.name)
    store.write_json("job.json", job.model_dump(mode="json"))
    store.write_json("plan.json", plan.summary())

    # 2. Prepare inputs every chunk reads.
    if getattr(job, "source", None) is not None:  # video2video, and AnimateDiff video-to-video
        try:
            prepare_sources(quote(job), out)
        except Exception:
            if stop_requested():  # its ffmpeg was stopped with the render; a rerun decodes what is missing
                return Cancelled(message=f"{job.name}: stopped while preparing its source")
            raise

    if fan_out:
        from framefarm.flows.fan_out import run_chunks_on_workers
        from framefarm.flows.job_ref import store_job

        job_ref = store_job(job, out)  # the job as resolved here (batch size), which every worker renders

        def run_chunks(plan, chunks):
            return run_chunks_on_workers(plan, chunks, job, job_ref, backend, out, priority, lock)
    else:
        def run_chunks(plan, chunks):
            return _run_chunks(plan, chunks, job, backend, out)

    # 3. Render chunks, a bounded number in flight, stopping new work once the error budget is spent.
    try:
        results, failures = run_chunks(plan, plan.chunks)
    except RenderPaused as paused:
        return Cancelled(message=str(paused))  # not a failure: the job waits for its window in a new run
    except RenderStopped as stopped:
        return Cancelled(message=str(stopped))  # the user stopped it: a rerun resumes
    _raise_for_failures(job, failures)

    # 4. Verify every planned frame against the manifest and its SHA-256; render damaged ones again.
    bad = verify_frames(quote(plan), out)
    if bad:
        store.remove_frames(bad)
        stale = [chunk for chunk in plan.chunks if set(bad).intersection(chunk.frames)]
        more, failures = run_chunks(plan, stale)
        _raise_for_failures(job, failures)
        results += more
        still_bad = verify_frames(quote(plan), out)
        if still_bad:
            raise RenderError(f"{len(still_bad)} frame(s) still missing after re-rendering: {still_bad[:10]}")

    # 5. Finish.
    try:
        videos = _encode_videos(plan, job, out)
        video = next(iter(videos.values()))
    except Exception:
        if stop_requested():  # ffmpeg was stopped with the render: every frame is kept, a rerun encodes
            return Cancelled(message=f"{job.name}: stopped while encoding; finished frames are kept")
        raise
    extra = {"video": video, **({"videos": videos} if plan.variations > 1 else {}), "renderer": plan.renderer, "fps": plan.fps, "width": plan.width, "height": plan.height}
    if backend != "preview":
        from framefarm.renderers.models.keys import model_short_hashes

        # A1111 short hashes of every model file the frames came from: what a person compares across renders.
        extra["models"] = model_short_hashes(job)
    if job.kind == "animatediff" and backend == "diffusers":
        from framefarm.renderers.diffusers.kinds.animatediff.renderer import clip_record

        extra["animatediff"] = clip_record(job)  # windows, segments, seeds, scheduler: what the clip depends on
    if batch_choice is not None:
        extra["batch_size"] = batch_choice
    store.write_manifest(plan.frame_keys, extra)
    # Per-chunk timings and workers, for the report and for spotting a slow GPU.
    store.write_json("chunks.json", [r.to_json() for r in sorted(results, key=lambda r: r.index)])
    rendered = sum(len(r.rendered) for r in results)
    reused = plan.frames - rendered
    report = _write_report(out, job.name, results)
    create_markdown_artifact(
        summary_markdown(plan, job, results, video=video, store_dir=store.fs.unstrip_protocol(store.job_dir),
                         report=report, models=extra.get("models"), seconds=time.perf_counter() - started),
        description=f"render of {job.name}",
    )
    return RenderResult(job=job.name, video=video, frames=plan.frames, rendered=rendered, reused=reused,
                        seconds=time.perf_counter() - started, chunks=tuple(sorted(results, key=lambda r: r.index)),
                        videos=videos if plan.variations > 1 else None)


def _encode_videos(plan, job, out: str) -> dict[str, str]:
    """The job's video, or one per variation, by name (``""`` for a job without variations)."""
    if plan.variations == 1:
        return {"": encode_video(quote(plan), quote(job), out)}
    return {name: encode_video(quote(plan), quote(job), out, variation=index)
            for index, name in enumerate(job.variation_names)}
