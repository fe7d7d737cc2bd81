"""SIGKILL a ``framefarm render --backend diffusers`` of a Deforum chain in the middle (its whole process group: the
CLI and its Prefect server), run it again, and check the frames against an uninterrupted render: byte-identical,
and no frame finished before the kill rendered again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from framefarm.storage import FrameStore
from tests.renderers.test_deforum_chain import frame_hashes

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

FRAMES = 8
JOB = """
name = "chainkill"
kind = "deforum"
width = 64
height = 64
frames = {frames}
fps = 8
seed = 11
cadence = 2
prompts = {{ 0 = "a glass city", 4 = "a moss forest" }}

[model]
models_dir = "{models}"
checkpoint = "tiny-sd15"
steps = 3
sampler = "Euler a"

[motion]
zoom = "0:(1.05)"
angle = "0:(3)"
strength = "0:(0.55)"
"""


def start(tmp_path, out) -> subprocess.Popen:
    # One torch thread, as the in-process render of the fixture uses: CPU results are then the same in both.
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "framefarm", "render", str(tmp_path / "job.toml"), "--backend", "diffusers",
               "--out", str(out), "--chunk-size", "2"]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def test_sigkill_mid_chain_then_resume_gives_identical_frames(tmp_path, models_dir):
    from framefarm.flows.render import render_job
    from framefarm.job import load_job

    (tmp_path / "job.toml").write_text(JOB.format(frames=FRAMES, models=models_dir))
    job = load_job(tmp_path / "job.toml")
    render_job(job, backend="diffusers", out=str(tmp_path / "clean"), chunk_size=4)
    expected = frame_hashes(tmp_path / "clean" / "chainkill" / "frames")
    assert len(expected) == FRAMES

    store = FrameStore(str(tmp_path / "killed"), "chainkill")
    process = start(tmp_path, tmp_path / "killed")
    deadline = time.monotonic() + 240
    # Frame 3 is an in-between of D_0 and D_1: killing after it means the restart must diffuse D_1 again.
    while store.count_records() < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the render finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = set(store.records())
    assert 4 <= len(finished) < FRAMES
    current = frame_hashes(tmp_path / "killed" / "chainkill" / "frames")
    assert all(current[f"{i:06d}.png"] == expected[f"{i:06d}.png"] for i in finished)

    final = start(tmp_path, tmp_path / "killed")
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    rendered = int(re.search(r"\((\d+) rendered, (\d+) reused\)", err).group(1))
    assert rendered == FRAMES - len(finished)
    assert frame_hashes(tmp_path / "killed" / "chainkill" / "frames") == expected
