"""The job report: made from a real render (Prefect flow, real ffmpeg), checked as HTML and in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from framefarm.report import REPORT_NAME, write_report
from framefarm.report.progress import scan, store_progress
from tests.report.chromium import Page, find_chromium

FRAMES, WIDTH, HEIGHT, FPS = 12, 96, 64, 24
CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed: `apt-get install -y chromium` (Debian) or set "
                             "FRAMEFARM_CHROMIUM to a Chromium/Chrome binary")


@pytest.fixture(scope="module")
def rendered(prefect_server, tmp_path_factory):
    """A demo job rendered through the flow: 12 frames in 3 chunks, a prompt change at frame 6."""
    from framefarm.flows.render import render_job
    from framefarm.job import job_from_preset

    root = tmp_path_factory.mktemp("renders")
    job = job_from_preset("zoom-tunnel", [f"frames={FRAMES}", f"width={WIDTH}", f"height={HEIGHT}",
                                          "prompts.6=a field of red poppies --neg fog"])
    result = render_job(job, backend="preview", out=str(root), chunk_size=4)
    return root, job, result


@pytest.fixture()
def report(rendered):
    """The report, with chunk timings given as the flow's ChunkResult objects and as dicts."""
    from framefarm.flows.tasks import ChunkResult

    root, job, _result = rendered
    timings = [ChunkResult(index=0, rendered=(0, 1, 2, 3), reused=(), seconds=0.42),
               {"index": 1, "seconds": 0.38, "rendered": 4, "reused": 0, "worker": "render01-gpu0",
                "gpu": "NVIDIA H200", "started": "2025-01-01T00:00:00+00:00"},
               {"index": 2, "seconds": 0.0, "rendered": [], "reused": [8, 9, 10, 11], "cached": True}]
    return Path(write_report(str(root), job.name, timings))


def test_report_sits_beside_the_video_and_holds_every_section(rendered, report):
    root, job, result = rendered
    video = Path(result.video)
    assert report == root / job.name / REPORT_NAME and report.parent == video.parent
    html = report.read_text()
    # The embedded video, by its relative name (the report works wherever the folder is copied).
    assert f'<source src="{video.name}" type="video/mp4">' in html
    # Contact sheet: every frame of a 12-frame job, inline JPEGs linking to the full frames.
    assert html.count('class="thumb"') == FRAMES
    assert html.count("data:image/jpeg;base64,") == FRAMES
    assert 'href="frames/000011.png"' in html and "#11 · seed 1245" in html
    # Schedules as plots: zoom and angle vary; strength and cfg_scale are shown constant; seeds per frame.
    for name in ("zoom", "angle", "strength", "cfg_scale", "seed"):
        assert f'id="plot-{name}"' in html, name
    # Prompt timeline: two runs, with the negative part.
    assert "0–5" in html and "6–11" in html and "a field of red poppies" in html and "negative: fog" in html
    # Chunk timings: the ChunkResult's tuple became a count; the cached chunk is marked; worker and GPU shown.
    assert "render01-gpu0" in html and "NVIDIA H200" in html and "2 (cached)" in html
    assert "3 chunk(s)" in html and "8 frame(s) rendered" in html
    assert "preview@" in html  # the renderer, from the manifest
    # Nothing from the network: no http(s) references at all.
    assert not re.search(r"""(src|href)=["']https?:""", html)
    assert "Content-Security-Policy" in html


def test_timings_are_kept_for_later_reports(rendered, report):
    root, job, _ = rendered
    saved = json.loads((root / job.name / "timings.json").read_text())
    assert [c["index"] for c in saved["chunks"]] == [0, 1, 2]
    assert saved["chunks"][0]["rendered"] == 4
    again = Path(write_report(str(root), job.name)).read_text()  # no timings given: the saved ones are shown
    assert "render01-gpu0" in again


@needs_chromium
def test_report_renders_in_headless_chromium_without_console_errors(rendered, report, tmp_path):
    root, job, result = rendered
    with Page(CHROMIUM, width=1280, height=900) as page:
        page.open(report.as_uri(), ready="document.body && document.body.getAttribute('data-report-ready') === '1'")
        # The video loads and is the render: duration and size from the decoder, not from the page's text.
        page.wait_for("(() => { const v = document.querySelector('video.deliverable'); "
                      "return v && v.readyState >= 1 && v.hasAttribute('data-duration'); })()", timeout=20)
        video = page.evaluate("(() => { const v = document.querySelector('video.deliverable'); return {"
                              "duration: v.duration, width: v.videoWidth, height: v.videoHeight, "
                              "error: v.getAttribute('data-error'), src: v.currentSrc}; })()")
        assert video["error"] is None
        assert video["duration"] == pytest.approx(FRAMES / FPS, abs=0.05)
        assert (video["width"], video["height"]) == (WIDTH, HEIGHT)
        assert video["src"].endswith(Path(result.video).name)
        # Contact sheet: 12 decoded thumbnails, laid out in a grid.
        sheet = page.evaluate("""(() => {
            const imgs = Array.from(document.querySelectorAll('#contact-sheet img.thumb'));
            const box = document.querySelector('#contact-sheet .sheet').getBoundingClientRect();
            return {count: imgs.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
                    rows: new Set(imgs.map(i => Math.round(i.getBoundingClientRect().top))).size,
                    box: {x: box.left + scrollX, y: box.top + scrollY, width: box.width, height: box.height},
                    first: (() => { const r = imgs[0].getBoundingClientRect();
                                    return {x: r.left + scrollX, y: r.top + scrollY, width: r.width,
                                            height: r.height}; })()};
        })()""")
        assert sheet["count"] == FRAMES and sheet["decoded"] == FRAMES
        assert sheet["rows"] >= 2 and sheet["box"]["width"] > 600
        # Plots: drawn curves with real extent, one per schedule shown.
        plots = page.evaluate("""Array.from(document.querySelectorAll('svg.plot')).map(s => ({
            name: s.getAttribute('data-name'), width: s.getBoundingClientRect().width,
            points: (s.querySelector('polyline.curve') || {points: {numberOfItems: 0}}).points.numberOfItems}))""")
        by_name = {p["name"]: p for p in plots}
        assert {"zoom", "angle", "strength", "cfg_scale", "seed", "chunk-seconds"} <= set(by_name)
        assert all(by_name[n]["points"] >= FRAMES and by_name[n]["width"] > 300 for n in ("zoom", "angle", "seed"))
        # The pointer read-out (the page's script) answers on a plot.
        page.evaluate("document.querySelector('#plot-angle').scrollIntoView()")
        box = page.evaluate("(() => { const r = document.querySelector('#plot-angle').getBoundingClientRect();"
                            " return {x: r.left, y: r.top, width: r.width, height: r.height, sx: scrollX,"
                            " sy: scrollY}; })()")
        page.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box["x"] + box["width"] / 2,
                                               "y": box["y"] + box["height"] / 2})
        readout = page.wait_for("document.querySelector('#plot-angle .readout').textContent", timeout=5)
        assert readout.startswith("frame ")
        # Screenshots: the contact sheet shows the frames (frame 0's thumbnail looks like frame 0).
        shot = cv2.imread(str(page.screenshot(tmp_path / "sheet.png", clip=sheet["box"])))
        assert shot is not None and shot.shape[1] >= 600 and shot.std() > 20
        first = cv2.imread(str(page.screenshot(tmp_path / "first.png", clip=sheet["first"])))
        frame0 = cv2.imread(str(root / job.name / "frames" / "000000.png"))
        first = cv2.resize(first, (frame0.shape[1], frame0.shape[0]), interpolation=cv2.INTER_AREA)
        assert np.abs(first.astype(float).mean((0, 1)) - frame0.astype(float).mean((0, 1))).max() < 20
        plot = cv2.imread(str(page.screenshot(tmp_path / "plot.png", clip={
            "x": box["x"] + box["sx"], "y": box["y"] + box["sy"], "width": box["width"], "height": box["height"]})))
        curve = np.all(np.abs(plot.astype(int) - (240, 201, 76)) < 40, axis=2)  # the angle curve (the first varying one: #4cc9f0), BGR
        assert curve.sum() > 100
        page.pump(0.3)
        assert page.errors == [], page.errors
        assert not any(e.startswith("error") for e in page.console), page.console
        assert {url.split(":", 1)[0] for url in page.requests} <= {"file", "data"}, page.requests


@needs_chromium
def test_the_console_check_catches_errors(tmp_path):
    """A control: a page with a script error and a blocked network load is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head><body>"
                   "<script>console.error('broken'); undefinedFunction();</script></body></html>")
    with Page(CHROMIUM) as page:
        page.open(bad.as_uri())
        page.pump(0.5)
    assert any("Uncaught" in e and "undefinedFunction" in e for e in page.errors), page.errors
    assert any("broken" in e for e in page.errors)


def _partial_job(root: Path, name: str, done: list[int], frames: int = 12, overrides: tuple[str, ...] = ()) -> None:
    """A job halfway through: job.json, plan.json and some frames, no manifest.json and no video yet."""
    from framefarm.animation.plan import plan_job
    from framefarm.images import encode_png
    from framefarm.job import job_from_preset
    from framefarm.storage import FrameStore

    job = job_from_preset("zoom-tunnel", [f"frames={frames}", "width=64", "height=64", f"name={name}", *overrides])
    plan = plan_job(job, renderer="preview@1", chunk_size=4)
    store = FrameStore(str(root), name)
    store.write_json("job.json", job.model_dump(mode="json"))
    store.write_json("plan.json", plan.summary())
    keys = plan.frame_keys
    for index in done:
        image = np.full((64, 64, 3), (index * 20) % 255, np.uint8)
        store.commit_frame(index, encode_png(image), key=keys[index], seed=index, width=64, height=64)


def test_report_and_progress_of_a_job_still_rendering(tmp_path):
    _partial_job(tmp_path, "live", [0, 1, 2, 3, 4])
    now = time.time()
    records = tmp_path / "live" / "manifest"
    for i, index in enumerate([0, 1, 3, 4, 2]):  # frame 2 finished last (chunks run side by side)
        os.utime(records / f"{index:06d}.json", (now - 8 + 2 * i, now - 8 + 2 * i))
    html = Path(write_report(str(tmp_path), "live")).read_text()
    assert "5/12 frames" in html and 'class="badge running"' in html
    assert 'id="latest"' in html and 'alt="frame 2"' in html  # the most recent frame, not the highest number
    assert "No video yet" in html
    assert html.count('class="thumb') == 5 + 1  # the sheet and the latest frame
    progress = store_progress(str(tmp_path), "live", now=now)
    assert (progress.state, progress.done, progress.frames, progress.latest) == ("running", 5, 12, 2)
    assert progress.rate == pytest.approx(0.5) and progress.eta_seconds == pytest.approx(14.0)
    stalled = store_progress(str(tmp_path), "live", now=now + 3600)
    assert stalled.state == "stopped" and stalled.eta_seconds is None


class _Markup(HTMLParser):
    """What a browser would build from the page: its elements by tag, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.attributes: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


def test_markup_in_a_job_shows_as_text(tmp_path):
    """A prompt, negative prompt, description, worker or job name holding HTML is shown as text, never run."""
    import dataclasses

    from framefarm.report.collect import collect
    from framefarm.report.page import render_page

    evil = "<script>alert('x')</script>"
    _partial_job(tmp_path, "evil", [0, 1], overrides=(f"description=made by {evil}", f'prompts.0=a "tunnel" & {evil}',
                                                      "prompts.6=poppies --neg <img src=x onerror=alert(1)>"))
    timings = [{"index": 0, "seconds": 0.5, "rendered": 4, "worker": evil, "gpu": "<b>H200</b>"}]
    html = Path(write_report(str(tmp_path), "evil", timings)).read_text()
    # A job's name cannot hold markup (the job schema refuses it), but the page must not rely on that.
    data = dataclasses.replace(collect(str(tmp_path), "evil"), job_name=evil)
    for page in (html, render_page(data, [], None)):
        parsed = _Markup()
        parsed.feed(page)
        assert parsed.tags.count("script") == 1  # the report's own script only
        assert "onerror" not in {name for name, _value in parsed.attributes}
        assert evil in "".join(parsed.text)
    parsed = _Markup()
    parsed.feed(html)
    text = "".join(parsed.text)
    assert f"made by {evil}" in text and f'a "tunnel" & {evil}' in text and evil in text
    assert "negative: <img src=x onerror=alert(1)>" in text and "<b>H200</b>" in text
    # The timeline's tooltip: the prompt (after the preset's positive_prompt) as an attribute value, quotes and all.
    assert any(name == "title" and value.startswith("frames 0–5: ") and value.endswith(f'a "tunnel" & {evil}')
               for name, value in parsed.attributes)


def test_a_deliverable_browsers_cannot_play_gets_a_preview(rendered, tmp_path):
    from framefarm.video import write_video_frames, probe_video
    from framefarm.images import decode_png

    root, job, _result = rendered
    copy = tmp_path / job.name
    shutil.copytree(root / job.name, copy, ignore=shutil.ignore_patterns("*.mp4", "report.html"))
    document = json.loads((copy / "job.json").read_text())
    document["output"]["codec"] = "hap"
    (copy / "job.json").write_text(json.dumps(document))
    frames = [decode_png((copy / "frames" / f"{i:06d}.png").read_bytes()) for i in range(FRAMES)]
    hap = write_video_frames(frames, copy / f"{job.name}_hap.mov", width=WIDTH, height=HEIGHT, fps=FPS, codec="hap")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["video"] = str(hap)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    html = Path(write_report(str(tmp_path), job.name)).read_text()
    assert '<source src="report-preview.mp4" type="video/mp4">' in html
    assert f"{hap.name} (hap)" in html
    assert probe_video(copy / "report-preview.mp4").frames == FRAMES


def test_cli_report_and_status(rendered, tmp_path):
    root, job, _ = rendered
    run = subprocess.run([sys.executable, "-m", "framefarm", "report", str(root / job.name)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == str(root / job.name / REPORT_NAME)
    _partial_job(tmp_path, "live", [0, 1, 2])
    status = subprocess.run([sys.executable, "-m", "framefarm", "status", "--out", str(tmp_path), "--no-farm",
                             "--json"], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert [(r["job"], r["state"], r["done"], r["frames"]) for r in rows] == [("live", "running", 3, 12)]
    table = subprocess.run([sys.executable, "-m", "framefarm", "status", "--out", str(tmp_path), "--no-farm"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "160"})
    assert table.returncode == 0 and "live" in table.stdout and "3/12" in table.stdout
    # A job the API holds in its queue (framefarm api over the same --out) shows as queued.
    queue = tmp_path / ".framefarm-api" / "jobs"
    queue.mkdir(parents=True)
    (queue / "abc.json").write_text(json.dumps({"id": "abc123", "name": "next-up", "state": "queued", "frames": 48,
                                                "out": str(tmp_path)}))
    status = subprocess.run([sys.executable, "-m", "framefarm", "status", "--out", str(tmp_path), "--no-farm",
                             "--json"], capture_output=True, text=True, timeout=120)
    assert [(r["job"], r["source"], r["state"]) for r in json.loads(status.stdout)] == [
        ("live", "local", "running"), ("next-up", "api", "queued")]
    missing = subprocess.run([sys.executable, "-m", "framefarm", "report", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "JOB" in missing.stderr


def test_cli_report_by_job_name_under_out_as_the_readme_shows(rendered, tmp_path):
    root, job, _ = rendered
    run = subprocess.run([sys.executable, "-m", "framefarm", "report", job.name, "--out", str(root)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == str(root / job.name / REPORT_NAME)
    missing = subprocess.run([sys.executable, "-m", "framefarm", "report", "no-such-job", "--out", str(root)],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert missing.returncode == 2
    assert f"JOB: no such job folder, job file, or job under --out {str(root)!r} (got 'no-such-job')" in missing.stderr


def test_a_rerun_in_progress_is_not_shown_as_the_previous_finished_render(rendered, tmp_path):
    root, job, _ = rendered
    copy = tmp_path / job.name
    shutil.copytree(root / job.name, copy)
    plan = json.loads((copy / "plan.json").read_text())
    plan["chunks"][1]["key"] = "0" * 64  # as if the job had changed: the new plan's frames are not the manifest's
    (copy / "plan.json").write_text(json.dumps(plan))
    html = Path(write_report(str(tmp_path), job.name)).read_text()
    assert "from an earlier render" in html and 'class="badge running"' in html


def test_scan_lists_job_folders_only(rendered, tmp_path):
    root, job, _ = rendered
    assert [p.job for p in scan(str(root))] == [job.name]
    assert scan(str(root))[0].state == "complete"


@pytest.mark.slow
def test_report_on_an_s3_store(rendered, s3_bucket):
    import fsspec

    root, job, _ = rendered
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    bucket = s3_bucket.removeprefix("s3://")
    fs.put(str(root / job.name), f"{bucket}/reports/{job.name}", recursive=True)
    location = write_report(f"{s3_bucket}/reports", job.name)
    assert location == f"{s3_bucket}/reports/{job.name}/{REPORT_NAME}"
    html = fs.cat_file(location).decode()
    assert html.count('class="thumb"') == FRAMES and "<video" in html and 'id="plot-zoom"' in html
