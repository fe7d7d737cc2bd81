"""Pieces of the API without a server: OSC encoding, the farm runner's view of Prefect flow runs."""

from __future__ import annotations

import datetime as dt
import struct
from types import SimpleNamespace

import pytest

from framefarm.api.osc import CLIP_READY, OscTarget, clip_ready_message, decode_message, encode_message
from framefarm.api.runner import FarmRunner, JobRecord, clip_facts
from framefarm.errors import InputError


def test_osc_messages_follow_the_1_0_layout():
    data = encode_message("/a", ["hi", 3, 1.5])
    # "/a\0\0" + ",sif" + "\0\0\0\0" (type tags padded) + "hi\0\0" + int32 + float32, big-endian.
    assert data == b"/a\0\0,sif\0\0\0\0hi\0\0" + struct.pack(">i", 3) + struct.pack(">f", 1.5)
    assert len(data) % 4 == 0
    message = clip_ready_message(path="/r/loop_1920x1080_25fps_375f.mov", fps=25.0, frames=375, bpm=128.0, beats=32,
                                 job="loop")
    assert decode_message(message) == (CLIP_READY, ["/r/loop_1920x1080_25fps_375f.mov", 25.0, 375, 128.0, 32, "loop"])
    assert OscTarget.parse("127.0.0.1:7000") == OscTarget("127.0.0.1", 7000)
    with pytest.raises(InputError, match="HOST:PORT"):
        OscTarget.parse("7000")


def test_clip_facts_come_from_the_output_name():
    record = JobRecord(id="x", name="loop", state="completed", runner="local", backend="preview", out="/nowhere",
                       frames=60, fps=30.0, created="", video="loop_512x512_60fps_120f_120bpm_4beats.mov")
    assert clip_facts(record) == (60.0, 120)  # interpolated x2: the deliverable's numbers, not the job's


def test_farm_runner_reads_flow_runs():
    run = SimpleNamespace(
        id="5f0c6a43-0a55-4c4a-9a2e-0d3c3a3c2b11", state_name="Late", state=SimpleNamespace(message=None),
        parameters={"job": {"name": "tunnel", "frames": 96, "fps": 24, "output": {"bpm": 120, "beats": 8}},
                    "out": "/renders", "backend": "preview", "chunk_size": None},
        created=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc), start_time=None, end_time=None)
    record = FarmRunner("/renders")._record_of(run)
    assert (record.name, record.state, record.frames, record.bpm, record.beats) == ("tunnel", "queued", 96, 120, 8)
    crashed = SimpleNamespace(**{**vars(run), "state_name": "Crashed", "state": SimpleNamespace(message="OOM")})
    assert FarmRunner("/renders")._record_of(crashed).state == "failed"


def test_a_loop_with_a_tempo_gets_its_beat_count_in_the_status(tmp_path):
    from framefarm.api.jobs import JobRequest
    from framefarm.api.runner import LocalRunner
    from framefarm.job import job_from_preset

    job = job_from_preset("vj-4beat-loop", ["output.bpm=120"])  # 60 frames at 30 fps: 4 beats, not given
    record = LocalRunner(str(tmp_path / "out"), tmp_path / "state").submit(job, JobRequest(job={}))
    assert (record.bpm, record.beats) == (120, 4)
