"""The CLI contract, run as a user runs it: a subprocess, exit codes, the video path as the last stdout line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from framefarm.video import probe_video


def framefarm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "framefarm", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_render_prints_the_video_path_last_and_writes_frames(tmp_path, job_file):
    path = job_file('preset = "vj-4beat-loop"\nname = "loop"\n')
    run = framefarm("render", str(path), "--out", str(tmp_path / "out"), "--chunk-size", "4",
                    "--set", "frames=9", "--set", "width=64", "--set", "height=64", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    video = Path(run.stdout.strip().splitlines()[-1])
    assert video.is_file() and video.parent == tmp_path / "out" / "loop"
    assert probe_video(video).frames == 9
    assert (tmp_path / "out" / "loop" / "frames" / "000008.png").is_file()


def test_invalid_job_exits_2_with_a_message_not_a_traceback(tmp_path, job_file):
    path = job_file('kind = "deforum"\nframes = -1\n')
    run = framefarm("render", str(path), cwd=tmp_path)
    assert run.returncode == 2
    assert "frames: Input should be greater than or equal to 1 (got -1)" in run.stderr
    assert "Traceback" not in run.stderr


def test_unknown_backend_exits_2(tmp_path, job_file):
    run = framefarm("render", str(job_file('kind = "deforum"\n')), "--backend", "magic", cwd=tmp_path)
    assert run.returncode == 2
    assert "--backend: is not a renderer" in run.stderr


def test_plan_json_lists_chunks_and_seeds(tmp_path, job_file):
    run = framefarm("plan", str(job_file('preset = "zoom-tunnel"\n')), "--json", "--chunk-size", "40", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    plan = json.loads(run.stdout)
    assert [(c["start"], c["stop"]) for c in plan["chunks"]] == [(0, 40), (40, 80), (80, 96)]
    assert plan["chunks"][2]["seeds"][0] == 1234 + 80


def test_presets_lists_the_shipped_presets(tmp_path):
    run = framefarm("presets", "--json", cwd=tmp_path)
    assert run.returncode == 0
    names = {row["name"] for row in json.loads(run.stdout)}
    assert {"zoom-tunnel", "vj-4beat-loop", "video-restyle", "animatediff-drift"} <= names


@pytest.mark.slow
def test_demo_renders_the_default_preset(tmp_path):
    run = framefarm("demo", "--out", str(tmp_path), "--set", "frames=8", "--set", "width=64", "--set", "height=64",
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert probe_video(run.stdout.strip().splitlines()[-1]).frames == 8


def test_plan_lists_per_frame_values(tmp_path, job_file):
    run = framefarm("plan", str(job_file('preset = "zoom-tunnel"\n')), "--json", "--frames", "47:49", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)["frame_values"]
    assert [row["frame"] for row in rows] == [47, 48]
    # Frame 48 is an expression key: 1.02 + 0.02·sin(48/8); frame 47 lies on the line from 1.04 (frame 0) to it.
    at_48 = 1.02 + 0.02 * math.sin(6)
    assert rows[1]["zoom"] == pytest.approx(at_48, abs=1e-12)
    assert rows[0]["zoom"] == pytest.approx(1.04 + (at_48 - 1.04) * 47 / 48, abs=1e-12)
    assert "blossoming flowers" in rows[1]["prompt"] and "blossoming" not in rows[0]["prompt"]
    bad = framefarm("plan", str(job_file('preset = "zoom-tunnel"\n')), "--frames", "90:9", cwd=tmp_path)
    assert bad.returncode == 2 and "--frames: is not a frame range" in bad.stderr
