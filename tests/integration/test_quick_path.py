"""The quick path for iteration: with a `prefect server start` running and PREFECT_API_URL pointing at it, a 1-frame
preview render uses that server (starts none), renders in its own process (starts no render process), writes the
frame and the video, and a rerun reuses the frame. Its wall time is printed and recorded, not asserted: the CI box is
shared (benchmarks/bench_quick_path.py measures it; README, "The farm")."""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.request
from pathlib import Path

import pytest

from framefarm.video import probe_video

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_quick_path.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_quick_path", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flow_runs(api_url: str) -> list[dict]:
    request = urllib.request.Request(f"{api_url}/flow_runs/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def test_a_1_frame_preview_uses_the_running_server_and_renders_in_process(tmp_path, record_property):
    bench = _bench()
    home = tmp_path / "prefect-home"
    with bench.prefect_server(home) as api_url:
        first = bench.render_once(api_url, tmp_path / "work", home)
        assert first["returncode"] == 0, first["stderr"][-3000:]
        again = bench.render_once(api_url, tmp_path / "work", home)  # same folder: resumes
        assert again["returncode"] == 0, again["stderr"][-3000:]
        runs = _flow_runs(api_url)

    # What was rendered: one frame, committed, and a 1-frame video whose path is the last stdout line.
    video = Path(first["stdout"].strip().splitlines()[-1])
    assert video.is_file() and video.parent == Path(first["out"]) / "quick"
    info = probe_video(video)
    assert (info.width, info.height, info.frames) == (512, 512, 1)
    assert len(list((video.parent / "frames").glob("*.png"))) == 1
    assert "1 frames (1 rendered, 0 reused)" in first["stderr"]
    assert "1 frames (0 rendered, 1 reused)" in again["stderr"]  # resume unchanged by the in-process path
    assert Path(again["stdout"].strip().splitlines()[-1]) == video

    # What was started: neither a server of its own nor a render process; the runs are on the running server.
    for run in (first, again):
        assert not [c for c in run["children"] if "uvicorn" in c or "render_process" in c], run["children"]
    assert sorted((r["name"], r["state_type"]) for r in runs) == [("render-quick", "COMPLETED")] * 2

    print(f"quick path: 1-frame preview render {first['seconds']:.2f} s, rerun {again['seconds']:.2f} s")
    record_property("quick_path_seconds", first["seconds"])
    record_property("quick_path_rerun_seconds", again["seconds"])
    sys.stdout.flush()
