"""Errors a render used to find late (after Prefect's start-up, as a traceback) are found first: exit 2, one readable
message naming the field, the value and the fix, and no Prefect at all.

Every run here points Prefect at a port where nothing listens: had the CLI reached Prefect, it would fail with a
connection error (exit 1), not with the input error checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

NO_PREFECT = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}
# The goal is < 1 s on an idle machine (measured: 0.6 s wall, 0.8 s of CPU). The bound is on the command's CPU
# time, which a loaded test box does not inflate as wall time; importing Prefect alone costs 1.9 s of CPU.
MAX_CPU_SECONDS = 1.6


def framefarm(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the CLI; returns the run and the CPU seconds (user + system) the command used."""
    import os
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run([sys.executable, "-m", "framefarm", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **NO_PREFECT})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return run, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.fixture()
def job(tmp_path: Path) -> Path:
    (tmp_path / "job.toml").write_text('preset = "zoom-tunnel"\nname = "early"\n')
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "models").mkdir()
    return tmp_path


CASES = {
    "missing source video": (
        ["--set", "preset=video-restyle", "--set", "source.video=clips/missing.mp4"],
        "source.video: no such file or folder (got 'clips/missing.mp4'). Give a video file, a folder of frames"),
    "checkpoint unset": (
        ["--backend", "diffusers"],
        "model.checkpoint: is not set. Name an SD1.5 or SDXL checkpoint of the models folder"),
    "checkpoint not in the models folder": (
        ["--backend", "diffusers", "--set", "model.models_dir=models", "--set", "model.checkpoint=dreamshaper_8"],
        "model.checkpoint: is not a checkpoint in"),
    "no models folder": (
        ["--backend", "diffusers", "--set", "model.models_dir=no-such-models", "--set", "model.checkpoint=x"],
        "model.models_dir: is not a folder"),
    "missing init image": (
        ["--set", "init_image=start.png"],
        "init_image: no such image file (got 'start.png'). Give the path of a PNG or JPEG"),
    "missing audio": (
        ["--set", "output.audio=track.wav"],
        "output.audio: no such audio file (got 'track.wav')"),
    "output folder is a file": (
        ["--out", "a-file"],
        "--out: is a file, not a folder (got 'a-file'). Choose a folder this user can write to"),
    "output folder under a file": (
        ["--out", "a-file/renders"],
        "--out: is under 'a-file', which is a file, not a folder"),
    "job name climbing out of the output folder": (
        ["--set", "name=../elsewhere"],
        "name: cannot be a folder name under --out (got '../elsewhere'). Use 1 to 100 letters, digits"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_late_error_is_found_before_prefect_starts(job, case):
    extra, message = CASES[case]
    run, seconds = framefarm(job, "render", "job.toml", *(["--out", "out"] if "--out" not in extra else []), *extra)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr and "<object object" not in run.stderr and "^[A-Za-z0-9]" not in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 2
    assert seconds < MAX_CPU_SECONDS
    assert not (job / "out" / "early" / "jobs").exists()  # nothing of the render was started


def test_encode_into_an_unwritable_place_exits_2_with_a_message(job):
    frames = job / "frames"
    frames.mkdir()
    import numpy as np

    from framefarm.images import encode_png

    for i in range(3):
        (frames / f"{i:06d}.png").write_bytes(encode_png(np.full((64, 64, 3), 40 * i, np.uint8)))
    run, _ = framefarm(job, "encode", "frames", "--fps", "24", "-o", "a-file/clip")
    assert run.returncode == 2, run.stderr
    assert "--out: is under 'a-file', which is a file, not a folder (got 'a-file/clip')" in run.stderr
    assert "Traceback" not in run.stderr
