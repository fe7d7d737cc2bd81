"""A studio night on a real farm: `prefect server start` on PostgreSQL, ≥ 16 simulated-GPU chunk workers, ≥ 100
jobs of mixed priorities and sizes (one ≥ 5 000 frames), ≥ 3 000 chunks, with faults mid-night: several chunk
workers SIGKILLed (and restarted) and the Prefect server restarted once. Writes benchmarks/results/farm_scale.json.

    PYTHONPATH=$PWD nohup python benchmarks/bench_farm_scale.py > /tmp/farm_scale.log 2>&1 &
    PYTHONPATH=$PWD python benchmarks/bench_farm_scale.py --workers 4 --jobs 6 --big-frames 240 --seconds-per-frame 0.2

The simulated GPU sleeps ``--seconds-per-frame`` per frame (no CPU), so the two cores of a small box measure what
the farm's control plane costs: Prefect's server and database, the parent flow runs, the workers' bookkeeping.

Figures (from the chunk records every worker leaves in the job folders, ``<job>/chunk-runs/``):

* ``gpu_idle_fraction_orchestration``: per worker, the time between finishing a chunk and starting the next while
  that next chunk was already queued (``start − max(previous finish, queued)``), over the worker's time from its
  first chunk start to its last finish. Idle time with nothing queued is in ``gpu_idle_fraction_total``.
* ``dispatch_latency_s``: per chunk, from "queued and a worker free" to "started" (p50/p95); the wait in the queue
  behind other chunks is ``queue_wait_s``.
* ``lookahead``: the workers' ``--lookahead-s`` and how often a chunk was taken while the worker's previous chunk
  still rendered (``taken`` before the previous ``finished``), with how long such chunks waited for the GPU.
  "Started" is always the start on the GPU (the claim's ``started``), "taken" the moment the worker took the chunk
  from Prefect's queue.
* ``server_cpu_s_per_chunk``: CPU seconds of the `prefect server` process tree (both lives) ÷ chunks.
* ``database_inserts_per_chunk``: PostgreSQL's insert counters per table ÷ chunks; with ``--count-api`` the server
  logs its requests (uvicorn's access log) and ``api_calls_per_chunk`` counts them by method and path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from framefarm.flows.gpu_slot import DEFAULT_LOOKAHEAD_S  # noqa: E402
from framefarm.storage.atomic import TEMP_MARKER  # noqa: E402
from tests.integration.farm_cluster import FarmCluster  # noqa: E402
from tests.support.postgres_server import postgres_database, psql  # noqa: E402

SIZES = (96, 144, 200, 248, 312)  # frames of the other jobs, cycled (about 200 on average)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def process_tree_cpu(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            times = process.cpu_times()
            total += times.user + times.system + getattr(times, "children_user", 0) + getattr(times, "children_system", 0)
        return total
    except psutil.Error:
        return 0.0


def box_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, every process of every user (/proc/stat)."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def farm_cpu_by_role(farm, database_port: str) -> dict[str, float]:
    """CPU seconds (user + system, reaped children included) of each part of the farm, processes alive now."""
    import psutil

    roles = {"prefect_server": process_tree_cpu(farm.server.pid) if farm.server else 0.0,
             "chunk_workers": sum(process_tree_cpu(p.pid) for p in farm.chunk_workers.values()),
             "parent_flows_and_job_worker": sum(process_tree_cpu(p.pid) for p in farm.job_workers.values())}
    postgres = 0.0
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        # The postmaster of the bench's own cluster (its connection processes are its reaped children).
        if cmdline and cmdline[0].endswith("/postgres") and "-p" in cmdline and database_port in cmdline:
            postgres += process_tree_cpu(process.pid)
    roles["postgres"] = postgres
    return {role: round(value, 1) for role, value in roles.items()}


def task_run_times(database: str) -> dict[str, list[tuple[float, float]]]:
    """Prefect's own start/end (epoch s) of every completed chunk task run, by name ``chunk-<job>-<index>``."""
    out = psql(database, "select name, extract(epoch from start_time), extract(epoch from end_time) from task_run "
                         "where state_type = 'COMPLETED' and start_time is not null and end_time is not null")
    found: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line in out.splitlines():
        name, start, end = line.split("|")
        found[name].append((float(start), float(end)))
    return found


def idle_breakdown(records: dict[str, list[dict]], prefect_times: dict[str, list[tuple[float, float]]]) -> dict:
    """Where a worker's time between one chunk and the next goes, for gaps where the next chunk was already queued
    when the previous one finished (so every second of the gap is the farm's own): ``finish`` from the chunk's last
    frame recorded to Prefect's end of the task run (result stored, Completed state); ``handout`` from that to
    Prefect's start of the next task run (subscribe again, the server hands a run out, parameters read, Running);
    ``start`` from that to the chunk's claim (job loaded, claim written). Seconds summed over all such gaps whose
    next chunk was taken after the previous one finished; gaps whose next chunk was taken ahead (look-ahead) are
    counted apart, with their mean."""
    def prefect_run(job: str, record: dict) -> tuple[float, float] | None:
        candidates = prefect_times.get(f"chunk-{job}-{record['index']}", [])
        near = [c for c in candidates if c[0] <= record["started"] + 1.0 and c[1] >= record["finished"] - 1.0]
        return min(near, key=lambda c: abs(c[0] - record["started"])) if near else None

    by_worker: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for job, rs in records.items():
        for record in rs:
            if "error" not in record:
                by_worker[record["worker"]].append((job, record))
    parts = {"finish": 0.0, "handout": 0.0, "start": 0.0}
    gaps = matched = ahead = 0
    gap_total = gap_ahead = 0.0
    for runs in by_worker.values():
        runs.sort(key=lambda jr: jr[1]["started"])
        for (pjob, previous), (job, run) in zip(runs, runs[1:]):
            if run["ready"] > previous["finished"]:
                continue
            gaps += 1
            gap = max(0.0, run["started"] - previous["finished"])
            gap_total += gap
            if run.get("taken", run["started"]) < previous["finished"]:
                # Taken ahead (look-ahead): the hand-out happened while the previous chunk rendered; the gap is
                # only the GPU passing from one task thread to the other. Prefect's start is the take, not the GPU
                # start, so these gaps are not split below.
                ahead += 1
                gap_ahead += gap
                continue
            before, after = prefect_run(pjob, previous), prefect_run(job, run)
            if before is None or after is None:
                continue
            matched += 1
            parts["finish"] += before[1] - previous["finished"]
            parts["handout"] += after[0] - before[1]
            parts["start"] += run["started"] - after[0]
    return {"gaps_with_next_chunk_queued": gaps, "gaps_next_taken_ahead": ahead,
            "gap_mean_s_next_taken_ahead": round(gap_ahead / max(ahead, 1), 3),
            "gap_mean_s_next_taken_after": round((gap_total - gap_ahead) / max(gaps - ahead, 1), 3),
            "gaps_matched_to_prefect_task_runs": matched,
            "gap_s_total": round(gap_total, 1),
            "mean_s": {part: round(value / max(matched, 1), 3) for part, value in parts.items()},
            "total_s": {part: round(value, 1) for part, value in parts.items()}}


def api_calls(server_log: Path) -> dict[str, int]:
    """Requests the server answered, by method and path (ids as ``{id}``), from uvicorn's access log lines."""
    import re

    found: dict[str, int] = defaultdict(int)
    pattern = re.compile(r'"(GET|POST|PATCH|PUT|DELETE|WebSocket) (/api/[^ ?"]*)')
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    for line in server_log.read_text(errors="replace").splitlines() if server_log.exists() else ():
        match = pattern.search(line)
        if match:
            found[f"{match.group(1)} {uuid.sub('{id}', match.group(2))}"] += 1
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def job_toml(name: str, frames: int) -> str:
    return f'preset = "zoom-tunnel"\nname = "{name}"\nframes = {frames}\nwidth = 64\nheight = 64\n'


def plan_jobs(count: int, big_frames: int, chunk: int, seed: int = 7) -> list[tuple[str, int, int]]:
    """(name, frames, priority): one big job at priority 5, the rest cycling through SIZES with priorities 1…10."""
    rng = random.Random(seed)
    jobs = [("big", big_frames, 5)]
    for i in range(count - 1):
        jobs.append((f"job{i:03d}", SIZES[i % len(SIZES)], rng.randint(1, 10)))
    rng.shuffle(jobs)
    return jobs


def read_records(renders: Path) -> dict[str, list[dict]]:
    """Every chunk outcome record by job."""
    found: dict[str, list[dict]] = defaultdict(list)
    for path in renders.glob("*/chunk-runs/*.json"):
        if path.name.endswith(".claim.json") or TEMP_MARKER in path.name:  # a killed worker's unfinished write
            continue
        try:
            found[path.parent.parent.name].append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return found


def orchestration_figures(records: list[dict]) -> dict:
    by_worker: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if "error" not in record:
            by_worker[record["worker"]].append(record)
    idle_orch = idle_total = busy_span = 0.0
    latencies, waits = [], []
    for runs in by_worker.values():
        runs.sort(key=lambda r: r["started"])
        busy_span += runs[-1]["finished"] - runs[0]["started"]
        previous = None
        for run in runs:
            waits.append(run["started"] - run["ready"])
            if previous is not None:
                gap = max(0.0, run["started"] - previous["finished"])
                idle_total += gap
                free_and_ready = max(previous["finished"], run["ready"])
                idle_orch += max(0.0, run["started"] - free_and_ready)
                latencies.append(max(0.0, run["started"] - free_and_ready))
            else:
                latencies.append(max(0.0, run["started"] - run["ready"]) if run["started"] - run["ready"] < 5 else 0.0)
            previous = run
    return {
        "gpu_idle_fraction_orchestration": round(idle_orch / busy_span, 4) if busy_span else None,
        "gpu_idle_fraction_total": round(idle_total / busy_span, 4) if busy_span else None,
        "dispatch_latency_s": {"p50": round(percentile(latencies, 0.5), 3), "p95": round(percentile(latencies, 0.95), 3),
                               "max": round(max(latencies), 3) if latencies else None},
        "queue_wait_s": {"p50": round(percentile(waits, 0.5), 1), "p95": round(percentile(waits, 0.95), 1)},
    }


def lookahead_figures(records: list[dict], lookahead_s: float) -> dict:
    """How often a worker took its next chunk while the previous one still rendered, and how long those waited for
    the GPU (``started − taken``)."""
    by_worker: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if "error" not in record:
            by_worker[record["worker"]].append(record)
    followers = ahead = 0
    waits = []
    for runs in by_worker.values():
        runs.sort(key=lambda r: r["started"])
        for previous, run in zip(runs, runs[1:]):
            followers += 1
            taken = run.get("taken", run["started"])
            if taken < previous["finished"]:
                ahead += 1
                waits.append(run["started"] - taken)
    return {"lookahead_s": lookahead_s, "chunks_after_another_on_same_worker": followers,
            "taken_ahead": ahead, "taken_ahead_fraction": round(ahead / followers, 3) if followers else None,
            "gpu_wait_s_taken_ahead": {"p50": round(percentile(waits, 0.5), 2),
                                       "p95": round(percentile(waits, 0.95), 2),
                                       "max": round(max(waits), 2)} if waits else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--big-frames", type=int, default=5000)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--seconds-per-frame", type=float, default=1.0)
    parser.add_argument("--parents", type=int, default=8, help="parent flow runs at once (the job worker's limit)")
    parser.add_argument("--kill", type=int, default=3, help="chunk workers SIGKILLed mid-night")
    parser.add_argument("--lookahead-s", type=float, default=DEFAULT_LOOKAHEAD_S,
                        help="the chunk workers' --lookahead-s (0: take a chunk only when the GPU is free)")
    parser.add_argument("--count-api", action="store_true",
                        help="log the server's requests (uvicorn access log) and count them per chunk")
    parser.add_argument("--root", type=Path, default=Path("/tmp/framefarm-farm-scale"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "farm_scale.json")
    args = parser.parse_args()

    import shutil

    shutil.rmtree(args.root, ignore_errors=True)
    args.root.mkdir(parents=True)
    renders = args.root / "renders"
    jobs = plan_jobs(args.jobs, args.big_frames, args.chunk_size)
    planned_chunks = sum(-(-frames // args.chunk_size) for _, frames, _ in jobs)
    print(f"{len(jobs)} jobs, {sum(f for _, f, _ in jobs)} frames, {planned_chunks} chunks", flush=True)

    with postgres_database() as database:
        farm = FarmCluster(args.root, database, seconds_per_frame=args.seconds_per_frame,
                           **({"PREFECT_SERVER_LOGGING_LEVEL": "INFO"} if args.count_api else {}))
        os.environ.update({k: v for k, v in farm.env.items() if k.startswith(("PREFECT_", "FRAMEFARM_"))})
        faults: list[str] = []
        requeued: list[str] = []
        server_cpu = 0.0
        try:
            farm.start_server()
            from framefarm.flows.farm import setup, submit
            from framefarm.job import load_job

            setup()
            names = [f"gpu{i:02d}" for i in range(args.workers)]
            for name in names:
                farm.start_chunk_worker(name, lookahead_s=args.lookahead_s)
            started = time.time()
            box_before = box_cpu_s()
            loads: list[float] = []
            runs: dict[str, tuple[str, int]] = {}
            for name, frames, priority in jobs:
                path = args.root / f"{name}.toml"
                path.write_text(job_toml(name, frames))
                runs[submit(load_job(path, []), out=str(renders), backend="simulated", chunk_size=args.chunk_size,
                            priority=priority, fan_out=True)] = (name, frames)
            print(f"submitted in {time.time() - started:.1f} s", flush=True)
            farm.start_job_worker("jobs", limit=args.parents)

            from prefect import get_client

            def states() -> dict[str, str]:
                with get_client(sync_client=True) as client:
                    found = [run for offset in range(0, len(runs) * 2, 200)
                             for run in client.read_flow_runs(limit=200, offset=offset)]
                return {str(run.id): run.state_name or "?" for run in found}

            killed = restarted = False
            while True:
                time.sleep(10)
                loads.append(os.getloadavg()[0])
                done_chunks = sum(len(v) for v in read_records(renders).values())
                try:
                    now = states()
                except Exception as exc:  # noqa: BLE001 - the server restarting
                    print(f"states unavailable: {exc}", flush=True)
                    continue
                counts: dict[str, int] = defaultdict(int)
                for run_id in runs:
                    counts[now.get(run_id, "?")] += 1
                print(f"{time.time() - started:7.0f} s  chunk records {done_chunks}/{planned_chunks}  {dict(counts)}",
                      flush=True)
                # Faults: workers SIGKILLed mid-chunk at a quarter of the night, the server restarted at half.
                if not killed and done_chunks >= planned_chunks * 0.25:
                    for name in random.Random(1).sample(names, args.kill):
                        farm.kill_chunk_worker(name)
                        print(f"SIGKILL {name}", flush=True)
                    time.sleep(3)
                    for name in names:
                        if farm.chunk_workers[name].poll() is not None:
                            farm.start_chunk_worker(name, lookahead_s=args.lookahead_s)
                    faults.append("worker_sigkill")
                    killed = True
                if not restarted and done_chunks >= planned_chunks * 0.5:
                    server_cpu += process_tree_cpu(farm.server.pid)
                    farm.stop_server()
                    print("Prefect server stopped", flush=True)
                    time.sleep(5)
                    farm.start_server()
                    print("Prefect server started again", flush=True)
                    faults.append("server_restart")
                    restarted = True
                # A parent run that failed in a fault is queued again once (its frames are kept).
                for run_id, (name, _) in list(runs.items()):
                    if now.get(run_id) in ("Failed", "Crashed") and name not in requeued:
                        from framefarm.flows.farm_runs import requeue

                        new = requeue(run_id)
                        runs[new] = runs.pop(run_id)
                        requeued.append(name)
                        print(f"requeued {name} ({now.get(run_id)}) as {new}", flush=True)
                finished = [run_id for run_id in runs if now.get(run_id) == "Completed"]
                if len(finished) == len(runs) or time.time() - started > 3 * 3600:
                    break
            wall = time.time() - started
            box_after = box_cpu_s()
            server_cpu += process_tree_cpu(farm.server.pid)
            cpu_by_role = extra_error = None
            try:
                cpu_by_role = farm_cpu_by_role(farm, database.rsplit(":", 1)[1].split("/")[0])
                prefect_times = task_run_times(database)
            except Exception as exc:  # noqa: BLE001 - the extra figures must not cost the run
                prefect_times, extra_error = {}, f"{type(exc).__name__}: {exc}"
            rows = {table: int(psql(database, f"select count(*) from {table}"))
                    for table in ("flow_run", "task_run", "task_run_state", "flow_run_state", "log", "events")}
            # Rows written per table (PostgreSQL's own counters: inserts, whether or not they were deleted since)
            # and the database's size on disk.
            inserts = {table: int(count) for table, count in (
                line.split("|") for line in psql(database, "select relname, n_tup_ins from pg_stat_user_tables "
                                                           "where n_tup_ins > 0 order by 2 desc").splitlines())}
            database_bytes = int(psql(database, "select pg_database_size(current_database())"))
        finally:
            farm.close()

    # ----- figures
    records = read_records(renders)
    all_records = [r for rs in records.values() for r in rs]
    chunk_count = 0
    frames_total = lost = 0
    verified = []
    from framefarm.video import probe_video

    for name, frames, _ in jobs:
        frames_total += frames
        manifest_path = renders / name / "manifest.json"
        present = len(json.loads(manifest_path.read_text())["frames"]) if manifest_path.exists() else 0
        lost += frames - present
        chunks_path = renders / name / "chunks.json"
        chunk_count += len(json.loads(chunks_path.read_text())) if chunks_path.exists() else 0
        videos = list((renders / name).glob("*.mp4"))
        verified.append(bool(videos) and probe_video(videos[0]).frames == frames)
    big = json.loads((renders / "big" / "chunks.json").read_text()) if (renders / "big" / "chunks.json").exists() else []
    result = {
        "benchmark": "farm_scale",
        "workers": args.workers,
        "jobs": len(jobs),
        "chunks": chunk_count,
        "chunks_planned": planned_chunks,
        "chunk_size": args.chunk_size,
        "lookahead_s": args.lookahead_s,
        "frames": frames_total,
        "lost_frames": lost,
        "videos_verified": sum(verified),
        "all_videos_verified": all(verified),
        "faults_survived": faults if all(verified) and lost == 0 else [],
        "faults_injected": faults,
        "workers_sigkilled": args.kill,
        "jobs_requeued_after_fault": requeued,
        "big_job_frames": args.big_frames,
        "big_job_workers": len({c["worker"] for c in big}),
        **orchestration_figures(all_records),
        "lookahead": lookahead_figures(all_records, args.lookahead_s),
        "idle_breakdown_s": idle_breakdown(records, prefect_times),
        "render_overhead_in_chunk_s": round(statistics.mean(
            r["finished"] - r["started"] - len(r.get("rendered", ())) * args.seconds_per_frame
            for r in all_records if "error" not in r), 3) if all_records else None,
        "chunk_handouts": len(all_records),
        "server_cpu_s": round(server_cpu, 1),
        "server_cpu_s_per_chunk": round(server_cpu / max(chunk_count, 1), 4),
        "database_rows_per_chunk": {table: round(count / max(chunk_count, 1), 2) for table, count in rows.items()},
        "database_inserts_per_chunk": {table: round(count / max(chunk_count, 1), 2) for table, count in inserts.items()},
        "database_bytes_per_chunk": round(database_bytes / max(chunk_count, 1)),
        "database_mb": round(database_bytes / 2**20, 1),
        "api_calls_per_chunk": ({call: round(count / max(chunk_count, 1), 3)
                                 for call, count in api_calls(args.root / "logs" / "server.log").items()}
                                if args.count_api else None),
        "simulated_gpu_seconds_per_frame": args.seconds_per_frame,
        "wall_s": round(wall, 1),
        # Processes alive at the end (a SIGKILLed worker's seconds are lost); the server's both lives.
        "cpu_s_by_role": {**cpu_by_role, "prefect_server": round(server_cpu, 1)} if cpu_by_role else None,
        "box_cpu_busy_fraction": round((box_after[0] - box_before[0]) / max(box_after[1] - box_before[1], 1e-9), 3),
        "box_cpu_s_busy_all_users": round(box_after[0] - box_before[0], 1),
        "load_average_1m": {"mean": round(statistics.mean(loads), 2), "max": round(max(loads), 2)} if loads else None,
        "extra_figures_error": extra_error,
        "ideal_wall_s": round(frames_total * args.seconds_per_frame / args.workers, 1),
        "parents_at_once": args.parents,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2), flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
