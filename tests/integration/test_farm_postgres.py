"""Two workers on a Prefect server backed by PostgreSQL (Debian's package, a throw-away cluster started here), as
in production: jobs start in priority order, each worker renders its own job, every chunk is rendered exactly once
and the outputs are complete.

Worker A is held busy with the high-priority job by a gate renderer (a test plug-in that waits for a file), so the
low-priority job can only be taken by worker B: the test does not depend on how fast this machine is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from framefarm.video import probe_video
from tests.integration.test_farm_queue import PREFECT, free_port, stop
from tests.support.postgres_server import postgres_database, psql

pytestmark = pytest.mark.slow
PLUGINS = Path(__file__).resolve().parents[1] / "support" / "plugins"


def wait_for(condition, what: str, logs: Path, timeout: float = 180, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        tail = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*.log")))
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{tail}"
        time.sleep(every)
    return value


def test_two_workers_on_postgresql_render_two_jobs_in_priority_order(tmp_path):
    with postgres_database() as database:
        port = free_port()
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
               "PREFECT_API_DATABASE_CONNECTION_URL": database, "PREFECT_LOGGING_LEVEL": "WARNING",
               "PREFECT_WORKER_QUERY_SECONDS": "2", "FRAMEFARM_GATE": str(tmp_path / "gate-open"),
               "PYTHONPATH": os.pathsep.join([str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])])}
        env.pop("PREFECT_LOCAL_STORAGE_PATH", None)
        logs = tmp_path / "logs"
        logs.mkdir()
        renders = tmp_path / "renders"

        def framefarm(*args: str) -> str:
            run = subprocess.run([sys.executable, "-m", "framefarm", *args], env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=180)
            assert run.returncode == 0, run.stderr
            return run.stdout.strip().splitlines()[-1]

        def queue() -> dict:
            listing = subprocess.run([sys.executable, "-m", "framefarm", "queue", "--json"], env=env, cwd=tmp_path,
                                     capture_output=True, text=True, timeout=120)
            return {job["run_id"]: job for job in json.loads(listing.stdout)}

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return False

        def worker(name: str) -> subprocess.Popen:
            return subprocess.Popen([PREFECT, "worker", "start", "--pool", "framefarm", "--type", "process",
                                     "--limit", "1"], env={**env, "FRAMEFARM_WORKER_ID": name}, cwd=tmp_path,
                                    stdout=open(logs / f"{name}.log", "wb"), stderr=subprocess.STDOUT,
                                    start_new_session=True)

        server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                  stdout=open(logs / "server.log", "wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        workers: list[subprocess.Popen] = []
        try:
            wait_for(healthy, "the Prefect server", logs, timeout=180, every=0.5)
            framefarm("farm-setup")
            for name in ("low", "high"):
                (tmp_path / f"{name}.toml").write_text(f'preset = "zoom-tunnel"\nname = "{name}"\nframes = 24\n'
                                                       "width = 64\nheight = 64\n")
            # Submitted low first: only the priority puts "high" ahead of it.
            low = framefarm("submit", "low.toml", "--priority", "5", "--chunk-size", "4", "--out", str(renders))
            high = framefarm("submit", "high.toml", "--priority", "1", "--chunk-size", "4", "--out", str(renders),
                             "--backend", "gate-test")

            workers.append(worker("pg-worker-a"))
            wait_for(lambda: queue()[high]["state"] == "Running", "worker A to take the high-priority job", logs)
            # A took high first; low waits for a free worker ("Late" is Prefect's name for a scheduled run past due).
            assert queue()[low]["state"] in {"Scheduled", "Late"}
            workers.append(worker("pg-worker-b"))
            wait_for(lambda: queue()[low]["state"] == "Completed", "worker B to finish the low-priority job", logs)
            (tmp_path / "gate-open").touch()  # now let A render the high-priority job
            jobs = wait_for(lambda: (q := queue())[high]["state"] == "Completed" and q, "the high job", logs)

            assert jobs[high]["started"] < jobs[low]["started"]
            for name, run_id, worker_id in (("low", low, "pg-worker-b"), ("high", high, "pg-worker-a")):
                assert jobs[run_id]["done"] == 24
                assert probe_video(renders / name / f"{name}_64x64_24fps_24f.mp4").frames == 24
                chunks = json.loads((renders / name / "chunks.json").read_text())
                # Every chunk exactly once, rendered (not reused) once, by the worker that took the job.
                assert [c["index"] for c in chunks] == list(range(6))
                assert sum(c["rendered"] for c in chunks) == 24 and {c["worker"] for c in chunks} == {worker_id}
                assert not (renders / name / "failures").exists()
            # The runs live in PostgreSQL, not in a SQLite file.
            assert int(psql(database, "select count(*) from flow_run where state_type = 'COMPLETED'")) >= 2
        finally:
            # Open the gate whatever happened: a flow run left waiting on it (its process runs in a session of its
            # own, beyond the worker's) then ends instead of idling until its chunk_timeout.
            (tmp_path / "gate-open").touch()
            for process in workers:
                stop(process)
            stop(server)
