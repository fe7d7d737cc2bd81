"""The process-per-GPU task runner: chunks run in spawned processes, each pinned to its own GPU id, and the frames
are identical to a render with the default thread runner (on CPU the ids only label the processes)."""

from __future__ import annotations

import hashlib

import pytest

from framefarm.errors import InputError
from framefarm.flows.gpu_runner import gpu_task_runner
from framefarm.flows.render import render_job
from framefarm.job import job_from_preset

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


def hashes(root, job):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / job / "frames").glob("*.png"))}


def test_one_process_per_gpu_gives_the_same_frames(tmp_path, monkeypatch):
    monkeypatch.delenv("FRAMEFARM_WORKER_ID", raising=False)
    job = job_from_preset("zoom-tunnel", ["frames=16", "width=64", "height=64", "name=gpus"])
    threads = render_job(job, out=str(tmp_path / "threads"), chunk_size=4)
    processes = render_job.with_options(task_runner=gpu_task_runner(["0", "1"]))(
        job, out=str(tmp_path / "processes"), chunk_size=4)
    assert hashes(tmp_path / "processes", "gpus") == hashes(tmp_path / "threads", "gpus")
    assert {r.worker.rsplit("-", 1)[-1] for r in processes.chunks} <= {"gpu0", "gpu1"}
    assert {r.worker for r in threads.chunks} == {threads.chunks[0].worker}  # the thread runner: one worker


def test_gpu_ids_must_be_distinct():
    with pytest.raises(InputError, match="--gpus: needs distinct GPU ids"):
        gpu_task_runner(["0", "0"])
