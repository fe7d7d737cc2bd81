"""``framefarm prefect-clean`` empties Prefect's home of old runs and cached results, and a rerun still resumes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_prefect_clean_removes_runs_and_results_and_a_rerun_still_reuses_every_frame(tmp_path):
    home = tmp_path / "prefect-home"  # its own Prefect home: other tests' runs are not this test's to delete
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage")}
    env.pop("PREFECT_API_URL", None)
    (tmp_path / "job.toml").write_text('preset = "zoom-tunnel"\nname = "tidy"\n')

    def framefarm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "framefarm", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    render = ["render", "job.toml", "--out", "out", "--set", "frames=6", "--set", "width=64", "--set", "height=64",
              "--chunk-size", "3"]
    assert framefarm(*render).returncode == 0
    results = [p for p in (home / "storage").rglob("*") if p.is_file()]
    assert len(results) >= 2  # one cached result per chunk

    dry = framefarm("prefect-clean", "--older-than", "0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 1 finished framefarm flow run(s)" in dry.stderr
    assert all(p.exists() for p in results)

    clean = framefarm("prefect-clean", "--older-than", "0")
    assert clean.returncode == 0, clean.stderr
    assert f"removed {len(results)} cached chunk result(s)" in clean.stderr
    assert "removed 1 finished framefarm flow run(s)" in clean.stderr
    assert f"compacted {home / 'prefect.db'}" in clean.stderr
    assert not any(p.is_file() for p in (home / "storage").rglob("*"))

    rerun = framefarm(*render)
    assert rerun.returncode == 0, rerun.stderr
    assert "(0 rendered, 6 reused)" in rerun.stderr  # the manifest, not Prefect's cache, says what is done
    assert Path(rerun.stdout.strip().splitlines()[-1]).is_file()
