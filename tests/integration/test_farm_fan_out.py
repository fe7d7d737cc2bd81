"""Fan-out on a real farm: `prefect server start` on PostgreSQL, a process worker for the job's parent flow run and
four chunk workers (`framefarm chunk-worker`, simulated GPUs). One job's chunks spread over all four; a worker
SIGKILLed mid-chunk is replaced and its chunk is rendered by another, with every frame kept. The job's parent run
holds the job folder's lock (taking over one left by a killed render); a farm run of a job folder whose lock another
live render holds fails without writing a frame.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framefarm.storage import FrameStore
from framefarm.storage.atomic import TEMP_MARKER
from framefarm.storage.job_lock import JobLock
from framefarm.video import probe_video
from tests.integration.farm_cluster import FarmCluster
from tests.support.postgres_server import postgres_database

pytestmark = pytest.mark.slow
FRAMES, CHUNK = 96, 4


def wait_for(condition, what: str, farm: FarmCluster, timeout: float = 150, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{farm.log_tail()}"
        time.sleep(every)
    return value


def claims(renders: Path, job: str) -> list[dict]:
    folder = renders / job / "chunk-runs"
    found = []
    for path in folder.glob("*.claim.json") if folder.exists() else ():
        if TEMP_MARKER in path.name:  # a claim being written (a worker killed before the rename never took it)
            continue
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return found


def test_one_job_spreads_over_four_chunk_workers_and_survives_a_killed_worker(tmp_path):
    with postgres_database() as database:
        farm = FarmCluster(tmp_path, database, seconds_per_frame=0.25)
        renders = tmp_path / "renders"
        try:
            farm.start_server()
            farm.framefarm("farm-setup")
            names = [f"gpu-{i}" for i in range(4)]
            for name in names:
                farm.start_chunk_worker(name)
            farm.start_job_worker("jobs", limit=2)
            for name in ("big", "held"):
                (tmp_path / f"{name}.toml").write_text(f'preset = "zoom-tunnel"\nname = "{name}"\nframes = {FRAMES}\n'
                                                       "width = 64\nheight = 64\n")
            # A render of "big" was killed with its worker and left its lock behind: the farm run takes it over.
            holder = subprocess.Popen(
                [sys.executable, "-c", "import sys, time\nfrom framefarm.storage import FrameStore\n"
                 "from framefarm.storage.job_lock import JobLock\n"
                 "JobLock(FrameStore(sys.argv[1], 'big'), 'a render killed with its worker').acquire()\n"
                 "print('locked', flush=True)\ntime.sleep(600)", str(renders)],
                env=farm.env, stdout=subprocess.PIPE)
            assert holder.stdout.readline() == b"locked\n"
            holder.kill()
            holder.wait()
            # Another render holds the lock of "held" (as `framefarm render` does): its farm run must not write.
            lock = JobLock(FrameStore(str(renders), "held"), "framefarm render held.toml (the test)")
            lock.acquire()
            held = farm.framefarm("submit", "held.toml", "--fan-out", "--backend", "simulated", "--chunk-size",
                                  str(CHUNK), "--out", str(renders))
            big = farm.framefarm("submit", "big.toml", "--fan-out", "--backend", "simulated", "--chunk-size",
                                 str(CHUNK), "--out", str(renders), "--priority", "1")

            # The fault: SIGKILL gpu-0 while it renders a chunk of the job, then start a fresh gpu-0.
            victim = wait_for(lambda: next((c for c in claims(renders, "big") if c["worker"] == "gpu-0"
                                            and not (renders / "big" / "chunk-runs" / f"{c['index']:06d}.json").exists()),
                                           None), "gpu-0 to take a chunk", farm)
            farm.kill_chunk_worker("gpu-0")
            farm.start_chunk_worker("gpu-0")

            wait_for(lambda: _queue_json(farm).get(big) == "Completed", "the big job", farm, timeout=240, every=2)
            assert _queue_json(farm).get(held) == "Failed"
        finally:
            farm.close()
        lock.release()

        assert "took over the lock of a render that is gone" in (tmp_path / "logs" / "jobs.log").read_text()
        assert not (renders / "big" / "render.lock").exists()  # released at the end of the run
        chunks = json.loads((renders / "big" / "chunks.json").read_text())
        assert [c["index"] for c in chunks] == list(range(FRAMES // CHUNK))
        assert {c["worker"] for c in chunks} == set(names)  # every worker rendered some of the one job
        outcome = json.loads((renders / "big" / "chunk-runs" / f"{victim['index']:06d}.json").read_text())
        assert outcome["attempt"] > victim["attempt"]  # the killed chunk was handed out again and finished
        manifest = json.loads((renders / "big" / "manifest.json").read_text())
        assert [f["index"] for f in manifest["frames"]] == list(range(FRAMES))  # no frame lost
        (video,) = (renders / "big").glob("*.mp4")
        assert probe_video(video).frames == FRAMES
        assert not (renders / "held" / "frames").exists() or not any((renders / "held" / "frames").iterdir())


def _queue_json(farm: FarmCluster) -> dict:
    listing = subprocess.run([sys.executable, "-m", "framefarm", "queue", "--json"], env=farm.env, cwd=farm.root,
                             capture_output=True, text=True, timeout=120)
    return {job["run_id"]: job["state"] for job in json.loads(listing.stdout or "[]")}
