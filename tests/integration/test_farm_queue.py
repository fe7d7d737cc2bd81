"""The farm for real: `prefect server start` and `prefect worker start` as subprocesses, jobs queued with priorities
through the `framefarm` CLI, run by the worker in priority order, with correct outputs."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from framefarm.video import probe_video

pytestmark = pytest.mark.slow
PREFECT = str(Path(sys.executable).parent / "prefect")

# A run waiting for a worker: Prefect renames Scheduled to Late 15 s after its start time (a loaded CI box).
WAITING = {"Scheduled", "Late"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_two_jobs_run_in_priority_order_on_a_real_server_and_worker(tmp_path):
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_LOGGING_LEVEL": "WARNING",
           "FRAMEFARM_POOL_CHECK_S": "0.5"}
    env.pop("PREFECT_LOCAL_STORAGE_PATH", None)
    logs = tmp_path / "logs"
    logs.mkdir()

    def framefarm(*args: str) -> str:
        run = subprocess.run([sys.executable, "-m", "framefarm", *args], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=180)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip().splitlines()[-1]

    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=open(logs / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    worker = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, (logs / "server.log").read_text()[-2000:]
                time.sleep(0.5)

        def queue() -> dict:
            listing = subprocess.run([sys.executable, "-m", "framefarm", "queue", "--json"], env=env, cwd=tmp_path,
                                     capture_output=True, text=True, timeout=120)
            return {job["run_id"]: job for job in json.loads(listing.stdout)}

        framefarm("farm-setup")
        for name in ("low", "high"):
            (tmp_path / f"{name}.toml").write_text(f'preset = "zoom-tunnel"\nname = "{name}"\nframes = 6\n'
                                                   "width = 64\nheight = 64\n")
        # Submitted low first: only the priority can put "high" ahead of it.
        low = framefarm("submit", "low.toml", "--priority", "5", "--out", str(tmp_path / "renders"))
        high = framefarm("submit", "high.toml", "--priority", "1", "--out", str(tmp_path / "renders"))
        listing = subprocess.run([sys.executable, "-m", "framefarm", "queue", "--json"], env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120)
        queued = {job["run_id"]: job for job in json.loads(listing.stdout)}
        # Waiting for a worker. Prefect names a scheduled run "Late" once it is 15 s past its start time, which a
        # loaded CI box reaches between the two submits; both are scheduled-type states.
        assert {queued[low]["state"], queued[high]["state"]} <= WAITING

        worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "framefarm", "--type", "process",
                                   "--limit", "1"], env=env, cwd=tmp_path, stdout=open(logs / "worker.log", "wb"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while True:
            listing = subprocess.run([sys.executable, "-m", "framefarm", "queue", "--json"], env=env,
                                     capture_output=True, text=True).stdout
            jobs = {job["run_id"]: job for job in json.loads(listing)}
            states = {jobs[low]["state"], jobs[high]["state"]}
            if states == {"Completed"}:
                break
            assert not states & {"Failed", "Crashed"}, (logs / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"{states}\n" + (logs / "worker.log").read_text()[-3000:]
            time.sleep(2)
        assert jobs[high]["started"] < jobs[low]["started"]
        # Submitted by reference (Prefect caps a run's parameters at 512 KB): the resolved job lies in its job
        # folder, which the worker read it from, and the listing read its frame count from.
        assert len(list((tmp_path / "renders" / "low" / "jobs").glob("*.json"))) == 1
        for name in ("low", "high"):
            assert jobs[low if name == "low" else high]["done"] == 6
            assert probe_video(tmp_path / "renders" / name / f"{name}_64x64_24fps_6f.mp4").frames == 6

        # Overnight window: close the pool while a long job runs. It stops at a chunk boundary, its run ends
        # Cancelled, a new run waits in the paused pool, and reopening the window finishes the job.
        (tmp_path / "night.toml").write_text('preset = "zoom-tunnel"\nname = "night"\nframes = 240\nwidth = 320\n'
                                             'height = 320\n[farm]\nmax_parallel_chunks = 1\n')
        night = framefarm("submit", "night.toml", "--chunk-size", "8", "--out", str(tmp_path / "renders"))
        now = dt.datetime.now().astimezone()
        hhmm = lambda moment: moment.strftime("%H:%M")  # noqa: E731
        deadline = time.monotonic() + 180
        while queue()[night]["done"] < 8:
            assert time.monotonic() < deadline, (logs / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        closed = framefarm("farm-window", "--once", "--start", hhmm(now + dt.timedelta(hours=2)),
                           "--end", hhmm(now + dt.timedelta(hours=3)))
        assert closed == "closed"
        deadline = time.monotonic() + 180
        while (state := queue()[night])["state"] != "Cancelled":
            assert time.monotonic() < deadline, f"{state}\n" + (logs / "worker.log").read_text()[-3000:]
            time.sleep(1)
        jobs = queue()
        stopped_at = jobs[night]["done"]
        assert 8 <= stopped_at < 240
        waiting = [j for j in jobs.values() if j["job"] == "night" and j["run_id"] != night]
        assert len(waiting) == 1 and waiting[0]["state"] in WAITING
        opened = framefarm("farm-window", "--once", "--start", hhmm(now - dt.timedelta(hours=1)),
                           "--end", hhmm(now + dt.timedelta(hours=1)))
        assert opened == "open"
        deadline = time.monotonic() + 240
        while queue()[waiting[0]["run_id"]]["state"] != "Completed":
            assert time.monotonic() < deadline, (logs / "worker.log").read_text()[-3000:]
            time.sleep(2)
        assert probe_video(tmp_path / "renders" / "night" / "night_320x320_24fps_240f.mp4").frames == 240
    finally:
        if worker is not None:
            stop(worker)
        stop(server)
