"""Look-ahead on a real farm (`prefect server start` on PostgreSQL, a process worker for the parent run, three chunk
workers with simulated GPUs): a worker takes its next chunk while the current one still renders, yet renders one at
a time; a worker SIGKILLed while a taken chunk waits for its GPU loses nothing (the chunk's claim goes stale and
another worker renders it); a worker stopped with SIGTERM gives its waiting chunk back, and that one is rendered by
another worker too; a chunk waiting for its GPU while the Prefect server restarts is rendered by the worker that
took it. Every frame of the job is there at the end.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from framefarm.storage.atomic import TEMP_MARKER
from framefarm.video import probe_video
from tests.integration.farm_cluster import FarmCluster
from tests.integration.test_farm_fan_out import _queue_json, wait_for
from tests.support.postgres_server import postgres_database

pytestmark = pytest.mark.slow
# 12 chunks of 6 s. A fault is injected while a worker's chunk has half its time left: 3 s for the worker to take its
# next chunk through the Prefect server, which on a loaded 2-core CI box took longer than the 2 s of 4-s chunks.
FRAMES, CHUNK, SECONDS_PER_FRAME = 96, 8, 0.75


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def waiting_claim(runs: Path, worker: str) -> tuple[dict, dict] | None:
    """A claim of ``worker`` taken while another of its chunks is on the GPU: ``(waiting, rendering)`` or None."""
    # Published claims only: a worker's claim in the making is a temp file beside it (the same suffix), and a
    # worker killed before its rename never took the chunk.
    paths = [p for p in runs.glob("*.claim.json") if TEMP_MARKER not in p.name]
    claims = [c for c in map(read_json, paths) if c and c["worker"] == worker]
    open_claims = [c for c in claims if not (runs / f"{c['index']:06d}.json").exists()]
    # The one rendering has at least half its time left, so the waiting one cannot reach the GPU before the fault.
    rendering = [c for c in open_claims
                 if "started" in c and time.time() - c["started"] < CHUNK * SECONDS_PER_FRAME / 2]
    waiting = [c for c in open_claims if "started" not in c and not c.get("given_back")]
    return (waiting[0], rendering[0]) if rendering and waiting else None


def outcome(runs: Path, index: int) -> dict | None:
    return read_json(runs / f"{index:06d}.json")


def test_a_worker_takes_its_next_chunk_ahead_renders_one_at_a_time_and_loses_none_when_killed_or_stopped(tmp_path):
    with postgres_database() as database:
        farm = FarmCluster(tmp_path, database, seconds_per_frame=SECONDS_PER_FRAME)
        renders = tmp_path / "renders"
        runs = renders / "ahead" / "chunk-runs"
        try:
            farm.start_server()
            farm.framefarm("farm-setup")
            for name in ("gpu-0", "gpu-1", "gpu-2"):
                farm.start_chunk_worker(name, lookahead_s=30)  # longer than a chunk: always one taken ahead
            farm.start_job_worker("jobs", limit=1)
            (tmp_path / "ahead.toml").write_text(f'preset = "zoom-tunnel"\nname = "ahead"\nframes = {FRAMES}\n'
                                                 "width = 64\nheight = 64\n")
            run = farm.framefarm("submit", "ahead.toml", "--fan-out", "--backend", "simulated", "--chunk-size",
                                 str(CHUNK), "--out", str(renders), "--priority", "1")

            # SIGKILL gpu-0 while a chunk it took waits for its GPU behind the one rendering.
            killed, _ = wait_for(lambda: waiting_claim(runs, "gpu-0"), "gpu-0 to hold a chunk waiting for its GPU",
                                 farm, every=0.1)
            farm.kill_chunk_worker("gpu-0")
            assert "started" not in read_json(runs / f"{killed['index']:06d}.claim.json")  # it never got the GPU

            # SIGTERM gpu-1 while it holds one waiting: the waiting chunk is given back at once, not rendered
            # there; the one on its GPU finishes first.
            stopped, finishing = wait_for(lambda: waiting_claim(runs, "gpu-1"),
                                          "gpu-1 to hold a chunk waiting for its GPU", farm, every=0.1)
            os.killpg(farm.chunk_workers["gpu-1"].pid, signal.SIGTERM)
            given_back = wait_for(lambda: (c := read_json(runs / f"{stopped['index']:06d}.claim.json"))
                                  and c.get("given_back") and c, "gpu-1 to give its waiting chunk back", farm,
                                  timeout=10, every=0.05)
            # It exits once the chunk on its GPU is done: a stop, not a failure (no error, no traceback).
            assert farm.chunk_workers["gpu-1"].wait(timeout=60) == 0

            # Restart the Prefect server while gpu-2 holds a chunk waiting for its GPU: the server forgets its
            # queue, but that chunk is claimed, so the parent leaves it to gpu-2, which renders it.
            kept, _ = wait_for(lambda: waiting_claim(runs, "gpu-2"), "gpu-2 to hold a chunk waiting for its GPU",
                               farm, every=0.1)
            restarted = time.time()
            farm.stop_server()
            farm.start_server()

            wait_for(lambda: _queue_json(farm).get(run) == "Completed", "the job", farm, timeout=240, every=2)
            # An idle worker, waiting for the server's next chunk, stops at once when asked.
            os.killpg(farm.chunk_workers["gpu-2"].pid, signal.SIGTERM)
            assert farm.chunk_workers["gpu-2"].wait(timeout=15) == 0
        finally:
            farm.close()

        assert given_back["attempt"] == stopped["attempt"] and "started" not in given_back
        for lost in (killed, stopped):  # both rendered by the worker still up, in a later hand-out
            done = outcome(runs, lost["index"])
            assert done is not None and "error" not in done, done
            assert done["worker"] == "gpu-2" and done["attempt"] > lost["attempt"]
        done = outcome(runs, kept["index"])
        assert done["worker"] == "gpu-2" and done["attempt"] == kept["attempt"] and "error" not in done, done
        # A given-back chunk is queued again at the parent's next look, not after a stale heartbeat. Unless that
        # hand-out still waited in the server's queue when the server restarted (gpu-2, the only worker left, had
        # taken another chunk ahead): then it was lost with the queue and handed out once more after the restart.
        again = outcome(runs, stopped["index"])
        if again["attempt"] == stopped["attempt"] + 1:
            assert again["ready"] - given_back["given_back"] < 5
        else:
            assert again["attempt"] == stopped["attempt"] + 2 and again["ready"] > restarted, again
        done = outcome(runs, finishing["index"])  # the chunk on gpu-1's GPU when it was stopped: finished there
        assert done["worker"] == "gpu-1" and done["attempt"] == finishing["attempt"] and "error" not in done, done

        records = [r for r in map(read_json, runs.glob("[0-9]*[0-9].json")) if r and "error" not in r]
        by_worker: dict[str, list[dict]] = {}
        for record in records:
            by_worker.setdefault(record["worker"], []).append(record)
        ahead = 0
        for worker_runs in by_worker.values():
            worker_runs.sort(key=lambda r: r["started"])
            for previous, current in zip(worker_runs, worker_runs[1:]):
                assert current["started"] >= previous["finished"], (previous, current)  # one at a time on a GPU
                ahead += current["taken"] < previous["finished"]  # taken while the previous one rendered
        assert ahead >= 3, by_worker

        for name in ("gpu-1", "gpu-2"):  # stopped with SIGTERM: a stop, said as one (the given-back chunk's task
            # run ends Cancelled, which Prefect's engine logs at its ERROR level whatever the cause)
            log = (tmp_path / "logs" / f"{name}.log").read_text(errors="replace")
            assert "Traceback" not in log and "Failed" not in log and "stopping: no new chunk" in log, log[-3000:]

        manifest = json.loads((renders / "ahead" / "manifest.json").read_text())
        assert [f["index"] for f in manifest["frames"]] == list(range(FRAMES))  # no frame lost
        (video,) = (renders / "ahead").glob("*.mp4")
        assert probe_video(video).frames == FRAMES
