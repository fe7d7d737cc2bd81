"""Orchestration overhead of a render: the Prefect flow against the same work done in a plain loop.

Both sides plan the job, render every frame with the preview renderer, commit it to the frame store (PNG + manifest
record) and encode the video. The difference is what framefarm's orchestration costs: Prefect flow and task runs,
progress artifacts, the cache and the verify pass (which re-reads and hashes every frame). Reported as seconds per
1 000 frames and as a fraction of a GPU render's time (SD1.5 512², 20 steps: ~0.17 s/frame on an H200 at batch 8,
see issue #9's figures), with the chunk size chosen automatically. The flow runs one chunk at a time so that it does
the same serial work as the loop: with chunks in parallel it beats the loop on a multi-core box and hides its cost.

    python benchmarks/bench_orchestration.py --frames 10000 --size 64 --out benchmarks/results/orchestration.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

GPU_SECONDS_PER_FRAME = 0.17


def direct(job, out: str) -> float:
    """The same work with no orchestration: plan, render + commit each frame, encode."""
    from framefarm.animation.plan import plan_job
    from framefarm.images import decode_png, encode_png
    from framefarm.renderers import get_renderer
    from framefarm.renderers.base import RenderContext
    from framefarm.storage import FrameStore
    from framefarm.video import encode_frames

    started = time.perf_counter()
    renderer = get_renderer("preview")
    plan = plan_job(job, renderer=renderer.id)
    store = FrameStore(out, job.name)
    context = RenderContext(job=job)
    for chunk in plan.chunks:
        for frame, image in renderer.render(chunk, list(chunk.frames), context):
            i = chunk.local(frame)
            store.commit_frame(frame, encode_png(image), key=chunk.frame_keys[i], seed=chunk.seeds[i],
                               width=image.shape[1], height=image.shape[0])
    frames = (decode_png(store.read_frame_bytes(i)) for i in range(plan.frames))
    encode_frames(frames, Path(out) / "direct.mp4", width=plan.width, height=plan.height, fps=plan.fps)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (small: measure overhead)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/orchestration.json"))
    parser.add_argument("--profile", type=Path, help="also write a cProfile of the flow run here (pstats file)")
    args = parser.parse_args()

    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="ff-bench-prefect-"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a loaded CI box is slow
    from framefarm.animation.plan import auto_chunk_size
    from framefarm.flows.render import render_job
    from framefarm.job import job_from_preset

    job = job_from_preset("zoom-tunnel", [f"frames={args.frames}", f"width={args.size}", f"height={args.size}",
                                          "name=bench", "farm.max_parallel_chunks=1"])
    with tempfile.TemporaryDirectory() as folder:
        # Start Prefect's ephemeral server first (a one-off ~10 s per process, not a per-job cost).
        render_job(job_from_preset("zoom-tunnel", ["frames=1", "width=64", "height=64", "name=warmup"]),
                   backend="preview", out=str(Path(folder) / "warmup"))
        baseline = direct(job, str(Path(folder) / "direct"))
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.perf_counter()
        result = render_job(job, backend="preview", out=str(Path(folder) / "flow"))
        flow_total = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(args.profile))
        started = time.perf_counter()
        rerun = render_job(job, backend="preview", out=str(Path(folder) / "flow"))
        rerun_total = time.perf_counter() - started
    overhead = flow_total - baseline
    per_1000 = overhead / args.frames * 1000
    gpu_seconds = args.frames * GPU_SECONDS_PER_FRAME
    record = {
        "benchmark": "orchestration_overhead",
        "frames": args.frames,
        "size": args.size,
        "chunk_size": auto_chunk_size(args.frames),
        "baseline_direct_s": round(baseline, 3),
        "flow_s": round(flow_total, 3),
        "overhead_s": round(overhead, 3),
        "overhead_s_per_1000_frames": round(per_1000, 3),
        "overhead_fraction_of_gpu_render": round(overhead / gpu_seconds, 5),
        "ratio_flow_vs_direct": round(flow_total / baseline, 3),
        "rerun_all_cached_s": round(rerun_total, 3),
        "rerun_rendered": rerun.rendered,
        "rendered": result.rendered,
        "gpu_seconds_per_frame_assumed": GPU_SECONDS_PER_FRAME,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(record, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
