"""The render flow: plan → prepare → render chunks → verify → encode.

Runs in-process with Prefect's ephemeral server for a local render (nothing to start), or on a Prefect server with
workers. A rerun of the same job skips finished chunks (Prefect's persisted results, keyed by the chunk's hash) and
finished frames inside a chunk (the manifest); the verify step makes the two agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from framefarm.animation.plan import plan_job
from framefarm.errors import RenderError
from framefarm.flows.tasks import encode_video, input_hashes, prepare_sources, render_chunk, verify_frames
from framefarm.renderers import get_renderer
from framefarm.storage import FrameStore


@dataclass(frozen=True)
class RenderResult:
    """The outcome of a render: where the video is and what the run did."""

    job: str
    video: str
    frames: int
    rendered: int
    reused: int
    seconds: float


@flow(name="render-job", validate_parameters=False, flow_run_name="render-{job.name}")
def render_job(job: Any, backend: str = "preview", out: str = "renders", chunk_size: int | None = None) -> RenderResult:
    """Render a validated job into ``out/<job>/frames`` and an MP4 beside them.

    Args:
        job: a validated job spec (``framefarm.job.load_job``).
        backend: renderer name (``preview`` or ``diffusers``).
        out: store root: a local folder or an fsspec URL.
        chunk_size: frames per chunk task (does not change the frames, only the unit of retry and caching).
    """
    started = time.perf_counter()
    # 1. Plan (pure and cheap) and record what is about to be rendered.
    renderer = get_renderer(backend)
    plan = plan_job(job, renderer=renderer.id, chunk_size=chunk_size, input_hashes=input_hashes(job))
    store = FrameStore(out, job.name)
    store.write_json("job.json", job.model_dump(mode="json"))
    store.write_json("plan.json", plan.summary())

    # 2. Prepare inputs every chunk reads.
    if job.kind == "video2video":
        prepare_sources(job, out)

    # 3. Render chunks; progress in the Prefect UI as chunks finish.
    progress = create_progress_artifact(0.0, description=f"{job.name}: chunks finished")
    futures = [render_chunk.submit(chunk, job, backend, out) for chunk in plan.chunks]
    results = []
    for future in as_completed(futures):
        result = future.result()
        # A chunk served from Prefect's cache returns its first run's result: it rendered nothing now.
        results.append(result if future.state.name != "Cached" else replace(result, rendered=(), seconds=0.0))
        update_progress_artifact(progress, 100.0 * len(results) / len(futures))

    # 4. Verify: a cached chunk whose frames were since deleted or damaged is rendered again, cache refreshed.
    bad = set(verify_frames(plan, out))
    if bad:
        stale = [chunk for chunk in plan.chunks if bad.intersection(chunk.frames)]
        FrameStore(out, job.name).remove_frames(sorted(bad))
        retry = render_chunk.with_options(refresh_cache=True)
        results += [retry.submit(chunk, job, backend, out).result() for chunk in stale]
        still_bad = verify_frames(plan, out)
        if still_bad:
            raise RenderError(f"{len(still_bad)} frame(s) still missing after re-rendering: {still_bad[:10]}")

    # 5. Finish.
    video = encode_video(plan, job, out)
    store.write_manifest(plan.frame_keys, {"video": video, "renderer": plan.renderer, "fps": plan.fps,
                                           "width": plan.width, "height": plan.height})
    rendered = sum(len(r.rendered) for r in results)
    reused = plan.frames - rendered
    create_markdown_artifact(
        f"**{job.name}** ({job.kind}, {plan.renderer}): {plan.frames} frames at {plan.width}×{plan.height}, "
        f"{plan.fps:g} fps; rendered {rendered}, reused {reused}.\n\nVideo: `{video}`",
        description=f"render of {job.name}",
    )
    return RenderResult(job=job.name, video=video, frames=plan.frames, rendered=rendered, reused=reused,
                        seconds=time.perf_counter() - started)
