"""Deforum variations through the render flow on the diffusers backend (tiny models): the lockstep batches are
fixed by the plan, so frames are byte-identical across chunk sizes, after a SIGKILL of the whole render and a
rerun, and with chunks spread over two worker processes; each variation becomes its own video."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from framefarm.images import decode_png
from framefarm.storage import FrameStore
from tests.renderers.test_deforum_chain import frame_hashes

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

FRAMES, VARIATIONS = 5, 3


def job_fields(models_dir: str) -> dict:
    return dict(kind="deforum", name="takes", width=64, height=64, frames=FRAMES, fps=8, seed=3, cadence=2,
                prompts={"0": "a lighthouse", "3": "a storm"},
                motion={"zoom": "0:(1.05)", "angle": "0:(2)", "noise": "0:(0.05)", "strength": "0:(0.6)"},
                model=dict(models_dir=models_dir, checkpoint="tiny-sd15", steps=3, sampler="Euler"),
                variations=[{"name": "calm"}, {"seed_offset": 1000}, {"seed_offset": 2000, "positive_prompt": "neon"}])


def test_variations_render_identically_across_chunk_sizes_and_worker_processes(tmp_path, models_dir, monkeypatch):
    from framefarm.flows.gpu_runner import gpu_task_runner
    from framefarm.flows.render import render_job
    from framefarm.job import validate_job
    from framefarm.video import probe_video

    monkeypatch.delenv("FRAMEFARM_WORKER_ID", raising=False)
    # Spawned worker processes start a fresh torch: give them this process's one CPU thread, since a CPU matmul's
    # sums depend on how many threads split them (on a GPU the thread count plays no part).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    job = validate_job(job_fields(models_dir))
    one_step = render_job(job, backend="diffusers", out=str(tmp_path / "a"), chunk_size=VARIATIONS)
    bigger = render_job(job, backend="diffusers", out=str(tmp_path / "b"), chunk_size=4)  # rounded up to 6
    expected = frame_hashes(tmp_path / "a" / "takes" / "frames")
    assert len(expected) == FRAMES * VARIATIONS == one_step.frames
    assert frame_hashes(tmp_path / "b" / "takes" / "frames") == expected
    assert len(set(expected.values())) == len(expected)  # every take and time step differs

    # Chunks spread over two spawned worker processes: each reads the previous chunk's frames from the store.
    spread = render_job.with_options(task_runner=gpu_task_runner(["0", "1"]))(
        job, backend="diffusers", out=str(tmp_path / "c"), chunk_size=VARIATIONS * 2)
    assert frame_hashes(tmp_path / "c" / "takes" / "frames") == expected
    assert {r.worker.rsplit("-", 1)[-1] for r in spread.chunks} <= {"gpu0", "gpu1"}

    # One video per variation, named by the variation, holding that variation's frames t·V + v in order.
    assert list(one_step.videos) == ["calm", "v2", "v3"]
    store = FrameStore(str(tmp_path / "a"), "takes")
    for v, (name, video) in enumerate(one_step.videos.items()):
        assert Path(video).name.startswith(f"takes_{name}_64x64_8fps_{FRAMES}f.")
        info = probe_video(video)
        assert (info.frames, info.width, info.height) == (FRAMES, 64, 64)
    assert one_step.video == one_step.videos["calm"]
    manifest = store.read_json("manifest.json")
    assert set(manifest["videos"]) == {"calm", "v2", "v3"}
    # Variation 1's frames differ from variation 0's at every time step (another seed), yet share the camera: frame 0
    # of each variation is txt2img of its own seed.
    frames = {i: decode_png(store.read_frame_bytes(i)) for i in range(FRAMES * VARIATIONS)}
    for t in range(FRAMES):
        assert not np.array_equal(frames[t * VARIATIONS], frames[t * VARIATIONS + 1])


def start(job_file: Path, out: Path) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    command = [sys.executable, "-m", "framefarm", "render", str(job_file), "--out", str(out), "--backend", "diffusers",
               "--chunk-size", str(VARIATIONS)]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    log = open(out.parent / f"render-{time.monotonic_ns()}.log", "w+")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               env=env)
    process.log = log  # type: ignore[attr-defined]
    return process


def finish(process: subprocess.Popen) -> str:
    process.wait(timeout=300)
    process.log.seek(0)
    return process.log.read()


def test_sigkill_mid_lockstep_then_rerun_gives_identical_frames(tmp_path, models_dir):
    """The whole render (CLI, flow, render process) is killed once some but not all frames of a time step may be
    stored; the rerun diffuses the whole lockstep group again, so the missing frames match a clean render."""
    from framefarm.animation.job_toml import to_toml

    job_file = tmp_path / "job.toml"
    job_file.write_text(to_toml(job_fields(models_dir) | {"frames": 8}))
    clean = start(job_file, tmp_path / "clean")
    output = finish(clean)
    assert clean.returncode == 0, output
    expected = frame_hashes(tmp_path / "clean" / "takes" / "frames")
    assert len(expected) == 8 * VARIATIONS

    store = FrameStore(str(tmp_path / "killed"), "takes")
    killed = start(job_file, tmp_path / "killed")
    deadline = time.monotonic() + 300
    # Kill at a stored-frame count that is not a whole time step: a lockstep group is then half stored.
    while store.count_records() < 2 * VARIATIONS + 1 and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    kept = set(store.records())
    assert 0 < len(kept) < 8 * VARIATIONS, "the kill came too late to interrupt the render"
    current = frame_hashes(tmp_path / "killed" / "takes" / "frames")
    assert all(current[f"{i:06d}.png"] == expected[f"{i:06d}.png"] for i in kept)

    rerun = start(job_file, tmp_path / "killed")
    output = finish(rerun)
    assert rerun.returncode == 0, output
    assert frame_hashes(tmp_path / "killed" / "takes" / "frames") == expected
