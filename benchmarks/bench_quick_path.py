"""The quick path for iteration: a 1-frame preview render against a Prefect server that is already running.

Starts ``prefect server start`` once (as a user does in a second terminal), then runs ``framefarm render`` with
``PREFECT_API_URL`` pointing at it several times, each into a fresh output folder (nothing to resume), and records the
wall time of each CLI run from process start to exit, plus what the CLI started: a render process or a server of its
own would both be start-up the quick path exists to avoid.

    python benchmarks/bench_quick_path.py --runs 7 --out benchmarks/results/quick_path.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

PREFECT = str(Path(sys.executable).parent / "prefect")
REPO = Path(__file__).resolve().parents[1]
# The zoom-tunnel preset (512², Deforum) cut to one frame: what a person previews while tuning a prompt or motion.
JOB = """\
name = "quick"
kind = "deforum"
width = 512
height = 512
fps = 24
frames = 1
seed = 1234
positive_prompt = "a neon tunnel of glowing rings, synthwave"

[motion]
zoom = "0:(1.02)"
angle = "0:(0.5)"
"""
# How often a render's children are looked at: a render process, once started, lives until the CLI exits.
WATCH_S = 0.02


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def prefect_server(home: Path, startup_timeout: float = 120.0):
    """``prefect server start`` on a free port with its own ``PREFECT_HOME``; yields its API URL."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "0"}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_LOCAL_STORAGE_PATH", None)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "server.log", "wb") as log:
        server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError((home / "server.log").read_text()[-2000:]) from None
                time.sleep(0.3)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def render_once(api_url: str, work: Path, home: Path) -> dict:
    """One ``framefarm render job.toml --backend preview`` into a fresh folder under ``work``: its wall time, exit
    code, output and the command lines of every process it started (seen while it ran)."""
    import psutil

    work.mkdir(parents=True, exist_ok=True)
    (work / "job.toml").write_text(JOB)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO)}
    env.pop("PREFECT_LOCAL_STORAGE_PATH", None)
    command = [sys.executable, "-m", "framefarm", "render", "job.toml", "--backend", "preview", "--out", "renders"]
    started = time.perf_counter()
    cli = subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children: set[str] = set()
    watched = psutil.Process(cli.pid)
    while cli.poll() is None:
        try:
            children.update(" ".join(c.cmdline()) for c in watched.children(recursive=True))
        except psutil.Error:
            pass  # a child that ended between the listing and the look: an ffmpeg, say
        time.sleep(WATCH_S)
    stdout, stderr = cli.communicate()
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "returncode": cli.returncode, "stdout": stdout, "stderr": stderr,
            "children": sorted(children), "out": str(work / "renders")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "quick_path.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="framefarm-quick-") as tmp:
        home = Path(tmp) / "prefect-home"
        with prefect_server(home) as url:
            runs = [render_once(url, Path(tmp) / f"run{i}", home) for i in range(args.runs)]
    failed = [r for r in runs if r["returncode"] != 0]
    if failed:
        print(failed[0]["stderr"][-3000:], file=sys.stderr)
        return 1
    seconds = [r["seconds"] for r in runs]
    document = {
        "benchmark": "quick_path_1_frame_preview",
        "command": "framefarm render job.toml --backend preview (1 frame, 512²) with PREFECT_API_URL set to a "
                   "running `prefect server start`",
        "runs": seconds, "min_s": min(seconds), "median_s": statistics.median(seconds), "max_s": max(seconds),
        "render_processes_started": sum(any("render_process" in c for c in r["children"]) for r in runs),
        "servers_started": sum(any("uvicorn" in c for c in r["children"]) for r in runs),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end",
        "python": platform.python_version(),
    }
    Path(args.out).write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
