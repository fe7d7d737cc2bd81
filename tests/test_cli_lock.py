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


def test_on_an_s3_store_a_second_render_is_refused_and_the_first_finishes(tmp_path, s3_bucket):
    import fsspec

    (tmp_path / "job.toml").write_text('preset = "zoom-tunnel"\nname = "shared"\n')
    out = f"{s3_bucket}/cli-lock-{tmp_path.name}"
    command = [sys.executable, "-m", "framefarm", "render", "job.toml", "--out", out, "--set", "frames=24",
               "--set", "width=128", "--set", "height=128"]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False)
    lock = f"{out.removeprefix('s3://')}/shared/render.lock"
    deadline = time.monotonic() + 60
    while not fs.exists(lock):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1]
        time.sleep(0.05)

    refused = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert f"--out: is being rendered by pid {first.pid}" in refused.stderr
    assert f"(got '{out}/shared')" in refused.stderr

    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert stdout.strip().splitlines()[-1] == f"{out}/shared/shared_128x128_24fps_24f.mp4"
    assert not fs.exists(lock)
    assert not (tmp_path / "s3:").exists()  # the URL was not taken for a local folder name
