"""Failures: retries, the job's error budget and the worker blocklist, with a real fault (a damaged source frame)."""

from __future__ import annotations

import pytest

from framefarm.errors import RenderError
from framefarm.flows.render import render_job
from framefarm.job import job_from_preset
from framefarm.storage import FrameStore

pytestmark = pytest.mark.usefixtures("prefect_server")


def restyle(*overrides: str):
    return job_from_preset("video-restyle", ["frames=16", "width=64", "height=64", "batch_size=1",
                                             "farm.chunk_retries=0", *overrides])


def damage_sources(root, job, frames):
    for index in frames:
        (root / job.name / "source" / f"{index:06d}.png").write_bytes(b"not a png any more")


def test_a_failed_chunk_fails_the_job_but_keeps_every_other_frame(tmp_path):
    job = restyle("name=budget-a")
    render_job(job, out=str(tmp_path), chunk_size=4)  # prepares the sources (and renders)
    store = FrameStore(str(tmp_path), job.name)
    store.remove_frames(range(16))
    damage_sources(tmp_path, job, [5])
    with pytest.raises(RenderError, match=r"1 chunk\(s\) of budget-a failed: chunk 1: RenderError"):
        render_job(job, out=str(tmp_path), chunk_size=4)
    assert sorted(store.records()) == [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15]  # only frames 5–7 missing
    assert store.failure_count("ignored") == 0


def test_error_budget_stops_new_chunks(tmp_path):
    job = restyle("name=budget-b", "farm.error_budget=1", "farm.max_parallel_chunks=1")
    render_job(job, out=str(tmp_path), chunk_size=4)
    store = FrameStore(str(tmp_path), job.name)
    store.remove_frames(range(16))
    damage_sources(tmp_path, job, [1, 9])
    with pytest.raises(RenderError, match="error budget spent"):
        render_job(job, out=str(tmp_path), chunk_size=4)
    assert sorted(store.records()) == [0]  # chunk 0 died at frame 1; no later chunk was started


def test_a_worker_that_keeps_failing_a_job_is_blocklisted(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMEFARM_WORKER_ID", "render07-gpu3")
    job = restyle("name=budget-c", "farm.blocklist_after=2", "farm.error_budget=10", "farm.chunk_retries=1",
                  "farm.retry_delay_seconds=0")
    render_job(job, out=str(tmp_path), chunk_size=4)
    store = FrameStore(str(tmp_path), job.name)
    store.remove_frames([6, 13])
    damage_sources(tmp_path, job, [6])
    with pytest.raises(RenderError, match="chunk 1"):
        render_job(job, out=str(tmp_path), chunk_size=4)
    assert store.failure_count("render07-gpu3") == 2  # the first try and its retry
    assert 13 in store.records() and 6 not in store.records()  # the healthy chunk finished regardless
    # Sources repaired, but this worker is now refused for this job.
    (tmp_path / job.name / "source" / "prepared.json").unlink()
    with pytest.raises(RenderError, match="WorkerBlocklisted: worker render07-gpu3 failed budget-c"):
        render_job(job, out=str(tmp_path), chunk_size=4)
    assert 6 not in store.records()
    monkeypatch.setenv("FRAMEFARM_WORKER_ID", "render08-gpu0")  # another worker takes the job and finishes it
    assert render_job(job, out=str(tmp_path), chunk_size=4).rendered == 1
