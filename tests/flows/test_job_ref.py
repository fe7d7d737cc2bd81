"""Jobs reach flows by reference (stored in the job folder, named by hash): any size renders, a damaged copy never."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from framefarm.errors import InputError
from framefarm.flows import job_ref
from framefarm.job import job_from_preset
from framefarm.video import probe_video

# A real Deforum settings file exported by a camera tool: 6 001 per-frame keys, a job of about 1 MB.
BIG_SETTINGS = Path("/work/shared/data/deforum-settings/04_marius-jopen_deforum-web-pilot__20250919110444_settings.txt")


def test_a_stored_job_loads_back_by_its_reference(tmp_path):
    job = job_from_preset("zoom-tunnel", ["frames=5"])
    ref = job_ref.store_job(job, str(tmp_path))
    assert ref.startswith("zoom-tunnel@sha256:")
    job_ref._RESOLVED.clear()  # as a worker process that did not store it
    assert job_ref.load_job_ref(ref, str(tmp_path)) == job
    assert job_ref.store_job(job, str(tmp_path)) == ref  # same content, same file


def test_a_process_keeps_only_the_most_recent_jobs_in_memory(tmp_path):
    # A chunk worker loads every job of a night: the cache of resolved jobs stays bounded, and a job dropped from it
    # loads again from its folder.
    maxsize = job_ref._RESOLVED.maxsize
    refs = [job_ref.store_job(job_from_preset("zoom-tunnel", [f"frames={5 + i}"]), str(tmp_path))
            for i in range(maxsize + 3)]
    assert len(job_ref._RESOLVED) == maxsize
    assert job_ref.load_job_ref(refs[0], str(tmp_path)).frames == 5


def test_a_changed_stored_job_is_refused(tmp_path):
    ref = job_ref.store_job(job_from_preset("zoom-tunnel"), str(tmp_path))
    stored = next((tmp_path / "zoom-tunnel" / "jobs").glob("*.json"))
    stored.write_text(stored.read_text().replace('"frames":96', '"frames":97'))
    job_ref._RESOLVED.clear()
    with pytest.raises(InputError, match="does not match its stored file"):
        job_ref.load_job_ref(ref, str(tmp_path))
    with pytest.raises(InputError, match="is not stored under"):
        job_ref.load_job_ref("other@sha256:" + "0" * 64, str(tmp_path))


@pytest.mark.slow
@pytest.mark.skipif(not BIG_SETTINGS.is_file(), reason="the shared Deforum settings files are not on this machine")
def test_a_deforum_settings_file_of_6001_keys_renders(tmp_path):
    def framefarm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "framefarm", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)

    imported = framefarm("import-deforum", str(BIG_SETTINGS), "-o", "big.toml", "--name", "big")
    assert imported.returncode == 0, imported.stderr
    assert (tmp_path / "big.toml").stat().st_size > 524_288  # larger than Prefect takes as flow parameters
    run = framefarm("render", "big.toml", "--out", "out", "--set", "frames=3", "--set", "width=64",
                    "--set", "height=64")
    assert run.returncode == 0, run.stderr[-3000:]
    assert probe_video(run.stdout.strip().splitlines()[-1]).frames == 3
    assert len(run.stderr) < 5000  # progress and a summary, never the job
    assert len(list((tmp_path / "out" / "big" / "jobs").glob("*.json"))) == 1
