"""Ctrl-C and SIGTERM stop a render; they are not failures. Run as a user runs it: a real CLI process in its own
process group (as a terminal makes one), real render processes, Prefect server and ffmpeg."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from framefarm.storage import FrameStore
from framefarm.video import probe_video

pytestmark = pytest.mark.slow

FRAMES = 200  # enough that a fast machine is still rendering when the signal lands
ARGS = ["--set", f"frames={FRAMES}", "--set", "width=256", "--set", "height=256", "--chunk-size", "4"]


def start(cwd: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "framefarm", "render", "job.toml", "--out", str(out), *ARGS, *extra]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_frames(store: FrameStore, process: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + 240
    while store.count_records() < count:
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the render made no progress"
        time.sleep(0.05)


def frame_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.png"))}


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "job.toml").write_text('preset = "zoom-tunnel"\nname = "stopme"\n')
    return tmp_path


def test_sigint_to_the_process_group_stops_keeps_frames_and_the_rerun_completes(workdir):
    store = FrameStore(str(workdir / "out"), "stopme")
    render = start(workdir, workdir / "out")
    wait_for_frames(store, render, 8)
    os.killpg(render.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, stderr = render.communicate(timeout=60)

    assert render.returncode == 130, stderr
    kept = store.count_records()
    assert 8 <= kept < FRAMES
    assert f"{kept} of {FRAMES} frames are finished and kept" in stderr
    assert "Resume with:\n  framefarm render job.toml --out" in stderr
    assert "Traceback" not in stderr
    assert not (workdir / "out" / "stopme" / "failures").exists()  # no worker was blamed for the stop

    rerun = start(workdir, workdir / "out")
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert f"{FRAMES - kept} rendered, {kept} reused" in stderr
    assert probe_video(stdout.strip().splitlines()[-1]).frames == FRAMES

    clean = start(workdir, workdir / "clean")
    assert clean.wait(timeout=300) == 0
    assert frame_hashes(workdir / "out" / "stopme" / "frames") == frame_hashes(workdir / "clean" / "stopme" / "frames")


def test_sigterm_to_the_cli_alone_ends_its_render_processes_and_its_prefect_server(workdir):
    store = FrameStore(str(workdir / "out"), "stopme")
    render = start(workdir, workdir / "out")
    wait_for_frames(store, render, 4)
    children = psutil.Process(render.pid).children(recursive=True)
    names = " ".join(" ".join(child.cmdline()) for child in children)
    assert "framefarm.flows.render_process" in names and "uvicorn" in names

    render.send_signal(signal.SIGTERM)  # a service manager or `kill PID`: the CLI has to pass the stop on
    _, stderr = render.communicate(timeout=60)

    assert render.returncode == 130, stderr
    assert "stopped by SIGTERM" in stderr
    assert not (workdir / "out" / "stopme" / "failures").exists()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []


def test_ctrl_c_with_a_process_pool_per_gpu_stops_the_pool_and_its_render_processes(workdir):
    # --gpus 0,1 on a CPU box: the ids only label the pool's processes, which render with the preview backend.
    store = FrameStore(str(workdir / "out"), "stopme")
    render = start(workdir, workdir / "out", "--gpus", "0,1")
    wait_for_frames(store, render, 4)
    children = psutil.Process(render.pid).children(recursive=True)
    os.killpg(render.pid, signal.SIGINT)
    _, stderr = render.communicate(timeout=60)

    assert render.returncode == 130, stderr
    assert "stopped by SIGINT" in stderr and "KeyboardInterrupt" not in stderr
    assert not (workdir / "out" / "stopme" / "failures").exists()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
