"""Hung GPU work: a renderer that really blocks forever is killed as a process after ``farm.chunk_timeout`` seconds
without a committed frame, the failure counts against the worker, the chunk is retried and the job completes with
the same frames as a render that never hung."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from framefarm.errors import InputError
from framefarm.flows.render import render_job
from framefarm.flows.tasks import worker_id
from framefarm.job import job_from_preset
from framefarm.storage import FrameStore

PLUGINS = Path(__file__).resolve().parents[1] / "support" / "plugins"


def frame_bytes(root: Path, job: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / job / "frames").glob("*.png"))}


@pytest.mark.usefixtures("prefect_server")
def test_a_hung_chunk_is_killed_retried_and_counted_against_the_worker(tmp_path, monkeypatch):
    # The plug-in is found through its entry point, here and in the render processes (which inherit PYTHONPATH).
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("FRAMEFARM_HANG_FRAME", "6")
    monkeypatch.setenv("FRAMEFARM_HANG_MARKERS", str(tmp_path))
    monkeypatch.setenv("FRAMEFARM_WORKER_ID", "render03-gpu1")
    job = job_from_preset("zoom-tunnel", ["frames=12", "width=64", "height=64", "name=hang",
                                          "farm.chunk_timeout=20", "farm.chunk_retries=1",
                                          "farm.retry_delay_seconds=0"])

    result = render_job(job, backend="hang-test", out=str(tmp_path / "hang"), chunk_size=4)

    hung_pid = int((tmp_path / "hung-at-6").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(hung_pid, 0)  # killed (and reaped), not left hanging beside the finished job
    assert worker_id() == "render03-gpu1"
    assert FrameStore(str(tmp_path / "hang"), "hang").failure_count("render03-gpu1") == 1
    retried = result.chunks[1]
    assert (retried.rendered, retried.reused) == ((6, 7), (4, 5))  # frames committed before the hang were kept
    assert result.frames == 12 and result.rendered == 10  # frames 4 and 5 count for the attempt that hung
    monkeypatch.delenv("FRAMEFARM_WORKER_ID")
    render_job(job, backend="preview", out=str(tmp_path / "reference"), chunk_size=4)
    assert frame_bytes(tmp_path / "hang", "hang") == frame_bytes(tmp_path / "reference", "hang")
    assert len(frame_bytes(tmp_path / "hang", "hang")) == 12


def test_chunk_timeout_must_be_positive():
    with pytest.raises(InputError, match="chunk_timeout"):
        job_from_preset("zoom-tunnel", ["name=t", "farm.chunk_timeout=0"])
    assert job_from_preset("zoom-tunnel", ["name=t"]).farm.chunk_timeout == 600


def test_errors_cross_the_process_boundary_with_their_type_and_message():
    from framefarm.errors import RenderError
    from framefarm.flows.render_process import _pack_error, _unpack_error

    original = InputError("motion.zoom", "1.0*(", "does not parse", "Close the bracket")
    crossed = _unpack_error(_pack_error(original))
    # Still an InputError, so the task neither retries it nor blocklists the worker.
    assert type(crossed) is InputError and str(crossed) == str(original) and crossed.field == "motion.zoom"
    assert type(_unpack_error(_pack_error(RenderError("source frame 5 is damaged")))) is RenderError

    class Unpicklable(Exception):
        def __reduce__(self):
            raise TypeError("no")

    text = _unpack_error(_pack_error(Unpicklable("cuda error 700")))
    assert type(text) is RenderError and str(text) == "Unpicklable: cuda error 700"
