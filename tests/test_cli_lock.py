"""Two renders of one job into one output folder: the second is refused (exit 2) or waits (--wait)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from framefarm.video import probe_video

pytestmark = pytest.mark.slow

ARGS = ["--out", "out", "--set", "frames=48", "--set", "width=256", "--set", "height=256", "--chunk-size", "4"]


def render(cwd: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "framefarm", "render", "job.toml", *ARGS, *extra], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_render_of_a_job_folder_is_refused_or_waits_its_turn(tmp_path):
    (tmp_path / "job.toml").write_text('preset = "zoom-tunnel"\nname = "shared"\n')
    first = render(tmp_path)
    lock = tmp_path / "out" / "shared" / "render.lock"
    deadline = time.monotonic() + 60
    while not lock.exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1]
        time.sleep(0.02)

    started = time.monotonic()
    refused = render(tmp_path)
    _, refused_err = refused.communicate(timeout=60)
    waiting = render(tmp_path, "--wait")

    assert refused.returncode == 2, refused_err
    assert time.monotonic() - started < 15  # refused before any Prefect start-up
    assert f"--out: is being rendered by pid {first.pid}" in refused_err
    assert "run again with --wait" in refused_err and "Traceback" not in refused_err

    first_out, first_err = first.communicate(timeout=300)
    waited_out, waited_err = waiting.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert waiting.returncode == 0, waited_err
    assert f"is being rendered by pid {first.pid}" in waited_err  # it said whom it waited for
    assert "(0 rendered, 48 reused)" in waited_err  # it started after the first had finished every frame
    assert probe_video(waited_out.strip().splitlines()[-1]).frames == 48
    assert not lock.exists()
