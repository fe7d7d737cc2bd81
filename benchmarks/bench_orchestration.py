"""Orchestration overhead of a render: the Prefect flow against the same work done in a plain loop.

Both sides plan the job, render every frame with the preview renderer, commit it to the frame store (PNG + manifest
record) and encode the video. The difference is what framefarm's orchestration costs: Prefect flow and task runs,
progress artifacts, the cache and the verify pass (which re-reads and hashes every frame). Reported as seconds per
1 000 frames and as a fraction of a GPU render's time (plain diffusers SD1.5 512², 25 steps, CFG: ~0.17 s/frame on
an H200 at batch 8, see issue #9's figures), with the chunk size chosen automatically. The flow runs one chunk at a
time so that it does the same serial work as the loop: with chunks in parallel it beats the loop on a multi-core box and hides its cost.
The loop runs in a fresh process; both sides are also measured in CPU seconds (this process and every process it
starts), which the load of a shared machine disturbs far less than wall time.

    python benchmarks/bench_orchestration.py --frames 10000 --size 64 --out benchmarks/results/orchestration.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Plain diffusers StableDiffusionPipeline, SD1.5 512², 25 steps, CFG, batch 8 on one H200: 5.8 images/s (issue #9's
# measurement), i.e. what a farm GPU does today. The second figure is that physical limit for the same job
# (~18.6 images/s at the card's fp16 matmul ceiling): the fraction there shows the headroom left as GPUs get faster.
GPU_SECONDS_PER_FRAME = 0.17
GPU_SECONDS_PER_FRAME_AT_CEILING = 1 / 18.6


def cpu_by_process() -> dict[str, float]:
    """CPU seconds of this process and every process it started (live, or reaped: ffmpeg), by kind."""
    import psutil

    me = psutil.Process()
    times = me.cpu_times()
    found = {"flow process": times.user + times.system, "render processes": 0.0, "prefect server": 0.0,
             "ffmpeg and other finished children": times.children_user + times.children_system}
    for child in me.children(recursive=True):
        try:
            child_times, command = child.cpu_times(), " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        kind = ("render processes" if "render_process" in command else
                "prefect server" if "prefect" in command else "ffmpeg and other finished children")
        found[kind] += child_times.user + child_times.system
    return found


def cpu_seconds() -> float:
    """CPU time of this process and every process it started (live or reaped): the render processes, Prefect's
    ephemeral server, ffmpeg. On a shared box, wall time swings with other people's load; CPU time much less."""
    return sum(cpu_by_process().values())


def direct(job, out: str) -> float:
    """The same work with no orchestration: plan, render + commit each frame, encode."""
    from framefarm.animation.plan import plan_job
    from framefarm.images import decode_png, encode_png
    from framefarm.renderers import get_renderer
    from framefarm.renderers.base import RenderContext
    from framefarm.storage import FrameStore
    from framefarm.video import write_video_frames

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
    write_video_frames(frames, Path(out) / "direct.mp4", width=plan.width, height=plan.height, fps=plan.fps)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (small: measure overhead)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/orchestration.json"))
    parser.add_argument("--direct-only", type=Path, help=argparse.SUPPRESS)  # internal: the baseline's own process
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
    if args.direct_only:
        cpu_start = cpu_seconds()
        wall = direct(job, str(args.direct_only))
        print(json.dumps({"wall": wall, "cpu": cpu_seconds() - cpu_start}))
        return
    with tempfile.TemporaryDirectory() as folder:
        # Start Prefect's ephemeral server first (a one-off ~10 s per process, not a per-job cost).
        render_job(job_from_preset("zoom-tunnel", ["frames=1", "width=64", "height=64", "name=warmup"]),
                   backend="preview", out=str(Path(folder) / "warmup"))
        # The loop runs in a fresh process of its own: in this one, Prefect's background threads (started by the
        # warm-up) would take the GIL from it and make the baseline look slower than it is.
        loop = subprocess.run([sys.executable, __file__, "--frames", str(args.frames), "--size", str(args.size),
                               "--direct-only", str(Path(folder) / "direct")], check=True, capture_output=True,
                              text=True)
        measured = json.loads(loop.stdout.strip().splitlines()[-1])
        baseline, baseline_cpu = measured["wall"], measured["cpu"]
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu_start = cpu_by_process()
        started = time.perf_counter()
        result = render_job(job, backend="preview", out=str(Path(folder) / "flow"))
        flow_total = time.perf_counter() - started
        cpu_end = cpu_by_process()
        flow_cpu_by_process = {kind: round(cpu_end[kind] - cpu_start[kind], 3) for kind in cpu_end}
        flow_cpu = sum(flow_cpu_by_process.values())
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
        "baseline_direct_cpu_s": round(baseline_cpu, 3),
        "flow_cpu_s": round(flow_cpu, 3),
        "flow_cpu_s_by_process": flow_cpu_by_process,
        "overhead_cpu_s_per_1000_frames": round((flow_cpu - baseline_cpu) / args.frames * 1000, 3),
        "overhead_cpu_fraction_of_gpu_render": round((flow_cpu - baseline_cpu) / gpu_seconds, 5),
        "overhead_cpu_fraction_at_gpu_ceiling": round(
            (flow_cpu - baseline_cpu) / (args.frames * GPU_SECONDS_PER_FRAME_AT_CEILING), 5),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "rerun_all_cached_s": round(rerun_total, 3),
        "rerun_rendered": rerun.rendered,
        "rendered": result.rendered,
        "gpu_seconds_per_frame_assumed": GPU_SECONDS_PER_FRAME,
        "gpu_seconds_per_frame_at_ceiling": round(GPU_SECONDS_PER_FRAME_AT_CEILING, 4),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(record, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
