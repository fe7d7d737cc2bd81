"""Benchmark: evaluate ~20 typical Deforum schedules for a 100 000-frame job, vectorised vs a per-frame loop.

Also a whole 3D Deforum job of that length: every schedule the job spec carries (about 30, checked as at job load)
and the per-frame 3D camera matrices the preview draws with. Throughput is reported as frames × schedules per second.

The baseline is what a straightforward port of Deforum does: walk the frames one by one, evaluate the active
expression for that single frame (with the same safe evaluator, compiled once, so only the looping differs), then
fill the open frames by linear interpolation in Python. It runs over ``--baseline-frames`` frames (a job of that
length) and is extrapolated linearly to the full job; both paths are checked to give the same values on that job.

Usage:
    python benchmarks/bench_schedules.py [--frames 100000] [--baseline-frames 2000] [--repeat 5]
                                         [--out benchmarks/results/schedules.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

try:
    import framefarm  # noqa: F401
except ImportError:  # run from a checkout without installing: python benchmarks/bench_schedules.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from framefarm.animation.camera import camera_motion, cumulative_camera
from framefarm.animation.keyframes import evaluate_schedules
from framefarm.animation.schedules import evaluate_job_schedules
from framefarm.animation.safe_math import compile_expression
from framefarm.job import validate_job

# Twenty schedules as they appear in real settings files: constants, the default zoom wobble, multi-key
# tweens, quoted max_f keys, long cos() products (from a published container's test settings) and where().
SCHEDULES: dict[str, str] = {
    "angle": "0:(0)",
    "zoom": "0:(1.0025+0.002*sin(1.25*3.14*t/30))",
    "translation_x": "0:(0), 30:(10*sin(2*3.14*t/60)), 500:(0), 900:(3), 40000:(-3), max_f:(0)",
    "translation_y": "0:(0), 100:(-5), 50000:(5), max_f:(0)",
    "translation_z": "0:(1.75)",
    "rotation_3d_x": "0:((0.11 * cos((120/ 240 * 3.141 * (t + 0) / 24))**1 + 0)"
                     "*(1 * cos((120 / 1920 * 3.141 * (t + 0) / 12 ))**1 + 1))",
    "rotation_3d_y": "0:(0.5*cos(t/40))",
    "rotation_3d_z": "0:(0), 2000:(0.2*sin(t/100)), 60000:(0)",
    "strength_schedule": "0:(0.65), 25:(0.55), 'max_f/2':(0.4), max_f:(0.65)",
    "noise_schedule": "0:(0.065)",
    "cfg_scale_schedule": "0:(7), 10000:(9), 20000:(7)",
    "steps_schedule": "0:(25)",
    "contrast_schedule": "0:(1.0)",
    "fov_schedule": "0:(70)",
    "near_schedule": "0:(200)",
    "far_schedule": "0:(10000)",
    "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
    "transform_center_x": "0:(0.5)",
    "transform_center_y": "0:(0.5+0.1*where(t%240<120, 1, -1))",
    "subseed_strength_schedule": "0:((0.20 * cos((120 / 120 * 3.141 * (t + 0) / 24))**1 + 0.55))",
}

_PLAIN = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)")


def naive_schedule(text: str, frames: int, seed: int) -> list[float]:
    """Per-frame evaluation, the way Deforum's loop works (used as the baseline and as a cross-check)."""
    pairs: dict[int, str] = {}
    for piece in re.split(r",(?![^()]*\))", text):
        key, value = piece.split(":", 1)
        key = key.strip().strip("\"'")
        frame = int(key) if key.isdigit() else math.trunc(
            compile_expression(key, field="key", names=frozenset({"max_f"})).evaluate(max_f=frames - 1))
        pairs[frame] = value.strip()
    series: list[float | None] = [None] * frames
    current, is_number = None, False
    for i in range(frames):
        if i in pairs:
            current = pairs[i]
            bare = current.replace("(", "").replace(")", "")
            is_number = bool(_PLAIN.fullmatch(bare))
            if is_number:
                series[i] = float(bare)
        if current is not None and not is_number:
            series[i] = compile_expression(current, field="f").evaluate(t=i, max_f=frames - 1, s=seed)
    known = [i for i, v in enumerate(series) if v is not None]
    series[0], series[-1] = series[known[0]], series[known[-1]]
    known = [i for i, v in enumerate(series) if v is not None]
    for left, right in itertools.pairwise(known):  # linear fill, one frame at a time
        for i in range(left + 1, right):
            series[i] = series[left] + (series[right] - series[left]) * (i - left) / (right - left)
    return series  # type: ignore[return-value]


def bench_job(frames: int, seed: int) -> tuple[object, float, float]:
    """A 3D Deforum job using the typical schedules above: (job, schedule evaluation s, camera matrices s)."""
    job = validate_job({
        "kind": "deforum", "name": "bench", "frames": 2, "seed": seed, "animation_mode": "3D",
        "motion": {
            "translation_x": SCHEDULES["translation_x"], "translation_y": SCHEDULES["translation_y"],
            "translation_z": SCHEDULES["translation_z"], "rotation_3d_x": SCHEDULES["rotation_3d_x"],
            "rotation_3d_y": SCHEDULES["rotation_3d_y"], "rotation_3d_z": SCHEDULES["rotation_3d_z"],
            "strength": SCHEDULES["strength_schedule"], "noise": SCHEDULES["noise_schedule"],
            "cfg_scale": SCHEDULES["cfg_scale_schedule"], "steps": SCHEDULES["steps_schedule"],
            "fov": SCHEDULES["fov_schedule"], "near": SCHEDULES["near_schedule"], "far": SCHEDULES["far_schedule"],
        },
    }).model_copy(update={"frames": frames})  # validated small, then lengthened: the timing covers one evaluation
    evaluate_job_schedules(job)  # parse cache warm, as for a job that was validated at load
    started = time.perf_counter()
    values = evaluate_job_schedules(job)
    evaluated = time.perf_counter() - started
    started = time.perf_counter()
    cumulative_camera(camera_motion(values, width=512, height=512, mode="3D"))
    return job, evaluated, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--baseline-frames", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "schedules.json")
    args = parser.parse_args()

    # 1. Vectorised: the first call parses every text (cold), later calls reuse the parse cache (warm).
    started = time.perf_counter()
    evaluate_schedules(SCHEDULES, frames=args.frames, seed=args.seed)
    cold_s = time.perf_counter() - started
    warm_runs = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        evaluate_schedules(SCHEDULES, frames=args.frames, seed=args.seed)
        warm_runs.append(time.perf_counter() - started)
    warm_s = min(warm_runs)

    # 2. Baseline: per-frame loop over a shorter job, extrapolated to the full one (its cost is linear in frames).
    started = time.perf_counter()
    naive = {name: naive_schedule(text, args.baseline_frames, args.seed) for name, text in SCHEDULES.items()}
    baseline_s = time.perf_counter() - started
    baseline_full_s = baseline_s * args.frames / args.baseline_frames

    # 3. A whole 3D Deforum job: all its schedules, checked, then its camera (what planning does before hashing).
    job, job_s, camera_s = bench_job(args.frames, args.seed)
    job_schedules = len(evaluate_job_schedules(job))

    # 4. Both paths must agree on the baseline-length job.
    vectorised = evaluate_schedules(SCHEDULES, frames=args.baseline_frames, seed=args.seed)
    worst = max(float(np.max(np.abs(vectorised[k] - np.array(naive[k])))) for k in SCHEDULES)
    if worst > 1e-9:
        print(f"MISMATCH between vectorised and per-frame values: {worst:g}", file=sys.stderr)
        return 1

    result = {
        "benchmark": "schedules",
        "schedules": len(SCHEDULES),
        "frames": args.frames,
        "vectorised_cold_s": round(cold_s, 6),
        "vectorised_warm_s": round(warm_s, 6),
        "baseline_frames": args.baseline_frames,
        "baseline_measured_s": round(baseline_s, 6),
        "baseline_extrapolated_s": round(baseline_full_s, 3),
        "speedup_warm": round(baseline_full_s / warm_s, 1),
        "speedup_cold": round(baseline_full_s / cold_s, 1),
        "throughput_warm_frame_schedules_per_s": round(len(SCHEDULES) * args.frames / warm_s),
        "throughput_cold_frame_schedules_per_s": round(len(SCHEDULES) * args.frames / cold_s),
        "job_3d_schedules": job_schedules,
        "job_3d_evaluate_s": round(job_s, 6),
        "job_3d_camera_s": round(camera_s, 6),
        "job_3d_throughput_frame_schedules_per_s": round(job_schedules * args.frames / job_s),
        "max_abs_difference": worst,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{len(SCHEDULES)} schedules x {args.frames} frames: vectorised {warm_s * 1e3:.1f} ms warm "
          f"({cold_s * 1e3:.1f} ms cold); per-frame loop {baseline_full_s:.1f} s (extrapolated from "
          f"{args.baseline_frames} frames, {baseline_s:.2f} s); ratio {baseline_full_s / warm_s:.0f}x warm, "
          f"{baseline_full_s / cold_s:.0f}x cold")
    print(f"whole 3D job: {job_schedules} schedules x {args.frames} frames evaluated and checked in "
          f"{job_s * 1e3:.1f} ms ({job_schedules * args.frames / job_s / 1e6:.1f} M frame-schedules/s); "
          f"3D camera matrices {camera_s * 1e3:.1f} ms")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
