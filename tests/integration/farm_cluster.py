"""A farm of real processes for the fan-out test and the scale benchmark: `prefect server start` on PostgreSQL, a
process worker for the jobs' parent flow runs, and chunk workers (``framefarm chunk-worker``), one per "GPU".

Every process runs in a session of its own, so a fault is a real SIGKILL of one worker's whole process group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PREFECT = str(Path(sys.executable).parent / "prefect")
PLUGINS = Path(__file__).resolve().parents[1] / "support" / "plugins"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class FarmCluster:
    """Server, job worker and chunk workers of one farm under ``root`` (logs in ``root/logs``)."""

    def __init__(self, root: Path, database: str, seconds_per_frame: float = 0.2, **env: str) -> None:
        self.root = root
        self.port = free_port()
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ, "PREFECT_HOME": str(root / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": f"http://127.0.0.1:{self.port}/api", "PREFECT_API_DATABASE_CONNECTION_URL": database,
            "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_WORKER_QUERY_SECONDS": "2",
            # Queued chunks wait in the server's memory, one queue per priority level: room for a night's worth.
            "PREFECT_TASK_SCHEDULING_MAX_SCHEDULED_QUEUE_SIZE": "100000",
            # Parameters of queued chunks are stored where every worker reads them (one host here; on a farm a
            # shared folder or bucket).
            "PREFECT_LOCAL_STORAGE_PATH": str(root / "prefect-results"),
            "FRAMEFARM_SIMULATED_SECONDS_PER_FRAME": str(seconds_per_frame),
            "PYTHONPATH": os.pathsep.join([str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])]),
            **env,
        }
        self.server: subprocess.Popen | None = None
        self.job_workers: dict[str, subprocess.Popen] = {}
        self.chunk_workers: dict[str, subprocess.Popen] = {}

    def _start(self, argv: list[str], log: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(argv, env={**self.env, **env}, cwd=self.root,
                                stdout=open(self.logs / f"{log}.log", "ab"), stderr=subprocess.STDOUT,
                                start_new_session=True)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def start_server(self, timeout: float = 180) -> None:
        self.server = self._start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                  "server")
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Prefect server did not start:\n"
                                   + (self.logs / "server.log").read_text()[-3000:])
            time.sleep(0.5)

    def stop_server(self) -> None:
        if self.server is not None:
            stop(self.server)

    def framefarm(self, *args: str, timeout: float = 300) -> str:
        run = subprocess.run([sys.executable, "-m", "framefarm", *args], env=self.env, cwd=self.root,
                             capture_output=True, text=True, timeout=timeout)
        if run.returncode != 0:
            raise RuntimeError(f"framefarm {' '.join(args)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
        return run.stdout.strip().splitlines()[-1]

    def start_job_worker(self, name: str, limit: int) -> subprocess.Popen:
        """A process worker for the jobs' parent flow runs (CPU only: they plan, queue, verify and encode)."""
        self.job_workers[name] = self._start([PREFECT, "worker", "start", "--pool", "framefarm", "--type",
                                              "process", "--limit", str(limit)], name, FRAMEFARM_WORKER_ID=name)
        return self.job_workers[name]

    def start_chunk_worker(self, name: str, lookahead_s: float | None = None) -> subprocess.Popen:
        """``lookahead_s``: the worker's ``--lookahead-s`` (None: its default)."""
        extra = [] if lookahead_s is None else ["--lookahead-s", str(lookahead_s)]
        self.chunk_workers[name] = self._start([sys.executable, "-m", "framefarm", "chunk-worker", *extra], name,
                                               FRAMEFARM_WORKER_ID=name)
        return self.chunk_workers[name]

    def kill_chunk_worker(self, name: str) -> None:
        stop(self.chunk_workers[name], signal.SIGKILL)

    def close(self) -> None:
        for process in [*self.chunk_workers.values(), *self.job_workers.values()]:
            stop(process)
        self.stop_server()

    def log_tail(self, chars: int = 1500) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in sorted(self.logs.glob("*.log")))
