"""Kill the whole render (SIGKILL to its process group: the CLI and its Prefect server) at random points, restart,
and check the result against an uninterrupted render: byte-identical frames, none missing or duplicated, and no
frame that was finished before a kill rendered again."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framefarm.storage import FrameStore
from tests.faults.conftest import fault_trials, frame_hashes as hashes_in

pytestmark = pytest.mark.slow

KILLS = fault_trials(2)
FRAMES = max(40, 5 * KILLS)  # the full version (20 kills) needs room for every kill to land on a new frame
JOB = ["--set", f"frames={FRAMES}", "--set", "width=320", "--set", "height=320", "--set", "name=killme",
       "--chunk-size", "6"]


def start(out: Path, cwd: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "framefarm", "render", str(cwd / "job.toml"), "--out", str(out), *JOB]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def frame_hashes(out: Path) -> dict[str, str]:
    return hashes_in(out / "killme" / "frames")


def test_sigkill_at_random_points_then_resume_gives_identical_frames(tmp_path, fault_log):
    (tmp_path / "job.toml").write_text('preset = "zoom-tunnel"\n')
    clean = start(tmp_path / "clean", tmp_path)
    out, err = clean.communicate(timeout=300)
    assert clean.returncode == 0, err
    expected = frame_hashes(tmp_path / "clean")
    assert len(expected) == FRAMES

    store = FrameStore(str(tmp_path / "killed"), "killme")
    rng = random.Random(20261128)
    kills = 0
    trials: list[dict] = []
    for k in range(KILLS):
        done_before = store.count_records()
        if done_before >= FRAMES - 2:
            break
        # Spread the kills over what is left, so that every one of them lands mid-job.
        step = max(1, (FRAMES - 2 - done_before) // (KILLS - k))
        target = rng.randint(done_before + 1, min(FRAMES - 2, done_before + step))
        process = start(tmp_path / "killed", tmp_path)
        deadline = time.monotonic() + 300
        while store.count_records() < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # it finished first: nothing left to kill
            pass
        process.wait()
        kills += 1
        finished = set(store.records())
        # Every frame the manifest calls finished is intact and identical to the clean render.
        current = frame_hashes(tmp_path / "killed")
        lost = sum(current.get(f"{i:06d}.png") != expected[f"{i:06d}.png"] for i in finished)
        trials.append({"frames_lost": lost, "at_frame": target, "finished": len(finished)})
        assert all(current[f"{i:06d}.png"] == expected[f"{i:06d}.png"] for i in finished)
    assert kills >= 1

    missing = FRAMES - store.count_records()
    final = start(tmp_path / "killed", tmp_path)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    rendered = int(re.search(r"\((\d+) rendered, (\d+) reused\)", err).group(1))
    assert rendered == missing  # nothing finished before a kill was rendered again
    assert frame_hashes(tmp_path / "killed") == expected  # none missing, none extra, all identical
    assert sorted(store.records()) == list(range(FRAMES))
    for trial in trials:  # logged once the resume has shown the job completes identically
        fault_log.trial("SIGKILL of the render process", survived=trial["frames_lost"] == 0,
                        outcome="resumed, frames identical", **trial)
