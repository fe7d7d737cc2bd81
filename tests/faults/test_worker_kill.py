"""SIGKILL of a worker process: ``framefarm render --gpus 0,1`` renders chunks in two spawned processes (one per
GPU); one of them is killed at a random point. The render must not hang, every frame finished before the kill stays
intact, and the render completes (on a fresh process pool: the CLI resumes by itself) with frames identical to a
clean render."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from framefarm.storage import FrameStore
from tests.faults.conftest import fault_trials, frame_hashes

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

FRAMES = 24
JOB = ["--set", f"frames={FRAMES}", "--set", "width=192", "--set", "height=192", "--set", "name=workers",
       "--set", "farm.retry_delay_seconds=0", "--chunk-size", "4"]


def start(out: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    # Output to files, not pipes: a pipe stays open while any process of the pool holds it, so reading it to EOF
    # would wait for stragglers rather than for the render.
    command = [sys.executable, "-m", "framefarm", "render", str(cwd / "job.toml"), "--out", str(out), *JOB, *extra]
    log = open(cwd / f"render-{time.monotonic_ns()}.log", "w+")
    from prefect.settings import PREFECT_API_URL

    # The session's Prefect server: each render then skips starting an ephemeral one of its own.
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, env=env)
    process.log = log  # type: ignore[attr-defined]
    return process


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for the render itself; then end what is left of its process group (its own children). Returns output."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail("the render hung after a worker process was killed")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.log.seek(0)
    return process.log.read()


def worker_processes(render: subprocess.Popen) -> list[psutil.Process]:
    """The spawned chunk workers of a render (multiprocessing's spawn children), oldest first."""
    try:
        children = psutil.Process(render.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    workers = []
    for child in children:
        try:
            if "multiprocessing" in " ".join(child.cmdline()) and "resource_tracker" not in " ".join(child.cmdline()):
                workers.append(child)
        except psutil.Error:
            continue
    return sorted(workers, key=lambda p: p.pid)


def test_sigkill_of_a_worker_process(tmp_path, fault_log):
    (tmp_path / "job.toml").write_text('preset = "zoom-tunnel"\n')
    clean = start(tmp_path / "clean", tmp_path)
    err = finish(clean)
    assert clean.returncode == 0, err
    expected = frame_hashes(tmp_path / "clean" / "workers" / "frames")
    assert len(expected) == FRAMES

    rng = random.Random(4242)
    for trial in range(fault_trials(1)):  # CI: one kill (a 2-process render is ~20 s here); full run: 20
        out = tmp_path / f"trial{trial}"
        store = FrameStore(str(out), "workers")
        target = rng.randint(1, FRAMES - 6)
        render = start(out, tmp_path, "--gpus", "0,1")
        deadline = time.monotonic() + 300
        while render.poll() is None and time.monotonic() < deadline:
            if store.count_records() >= target and worker_processes(render):
                break
            time.sleep(0.02)
        victims = worker_processes(render)
        killed = False
        if victims and render.poll() is None:
            victim = rng.choice(victims)
            finished_before = set(store.records())
            try:
                victim.send_signal(signal.SIGKILL)
                killed = True
            except psutil.NoSuchProcess:
                pass
        else:
            finished_before = set(store.records())
        err = finish(render)
        # The dead process takes its pool down (BrokenProcessPool for every chunk in flight); the CLI resumes on a
        # fresh pool, so the render completes without a rerun by hand.
        assert render.returncode == 0, err[-2000:]
        current = frame_hashes(out / "workers" / "frames")
        lost = sum(current.get(f"{i:06d}.png") != expected[f"{i:06d}.png"] for i in finished_before)
        assert lost == 0
        outcome = "resumed on a fresh pool" if "a worker process died" in err else "completed"
        assert frame_hashes(out / "workers" / "frames") == expected
        fault_log.trial("SIGKILL of a worker process", survived=True, frames_lost=lost,
                        outcome=f"{outcome}, frames identical" + ("" if killed else " (finished before the kill)"),
                        finished_before=len(finished_before))
