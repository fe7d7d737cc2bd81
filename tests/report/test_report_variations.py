"""The job report of a Deforum job with variations: V takes stored interleaved (frame t of take v is stored frame
t·V + v), rendered through the real flow with the preview backend, then read back as markup. Each take has its own
section: its name, seed offset, added prompts, video and a contact sheet of its own frames only."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from framefarm.report import REPORT_NAME, write_report
from framefarm.report.progress import store_progress

STEPS, TAKES, SIZE = 6, 3, 64
STORED = STEPS * TAKES
NAMES = ("v1", "neon", "v3")
EVIL = "<script>alert('take')</script>"


def variation_job(name: str = "zoom-tunnel"):
    """The zoom-tunnel preset as 3 takes: the second named, with an added prompt holding markup."""
    from framefarm.job import job_from_preset, validate_job

    job = job_from_preset("zoom-tunnel", [f"frames={STEPS}", f"width={SIZE}", f"height={SIZE}",
                                          f"variations={TAKES}", f"name={name}"])
    document = job.model_dump(mode="json")
    document["variations"][1].update(name="neon", positive_prompt=f"neon {EVIL}", negative_prompt="fog & <b>")
    return validate_job(document)


@pytest.fixture(scope="module")
def rendered(prefect_server, tmp_path_factory):
    """The job rendered through the flow (chunks of two time steps), and its report."""
    from framefarm.flows.render import render_job

    root = tmp_path_factory.mktemp("renders")
    job = variation_job()
    result = render_job(job, backend="preview", out=str(root), chunk_size=2 * TAKES)
    report = root / job.name / REPORT_NAME
    return root, job, result, report


class _Page(HTMLParser):
    """The report as a browser parses it: each take's section with its figures, links and video sources."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.takes: list[dict] = []
        self.text: list[str] = []
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.body: dict[str, str] = {}
        self._depth = 0  # <section> nesting
        self._take_depth: int | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        self.tags.append(tag)
        self.attributes += list(attrs.items())
        if tag == "body":
            self.body = attrs
        if tag == "section":
            self._depth += 1
            if "variation" in attrs.get("class", "").split():
                self._take_depth = self._depth
                self.takes.append({"name": attrs["data-variation"], "index": int(attrs["data-index"]),
                                   "frames": [], "steps": [], "links": [], "sources": [], "text": [],
                                   "tags": []})
        take = self.takes[-1] if self._take_depth is not None else None
        if take is None:
            return
        take["tags"].append(tag)
        if tag == "figure":
            take["frames"].append(int(attrs["data-frame"]))
            take["steps"].append(int(attrs["data-step"]))
        elif tag == "a" and attrs.get("href", "").startswith("frames/"):
            take["links"].append(attrs["href"])
        elif tag == "source":
            take["sources"].append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "section":
            if self._take_depth == self._depth:
                self._take_depth = None
            self._depth -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self._take_depth is not None:
            self.takes[-1]["text"].append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_each_take_has_its_own_section_frames_and_video(rendered):
    root, job, result, report = rendered
    assert report.is_file()
    html = report.read_text()
    page = parse(html)
    # Counts are of stored frames: 6 time steps × 3 takes.
    assert page.body["data-frames"] == str(STORED) and page.body["data-done"] == str(STORED)
    assert page.body["data-variations"] == str(TAKES)
    assert f"{STORED} stored: {STEPS} × {TAKES} variations" in html and 'class="badge complete"' in html
    assert html.count('class="thumb"') == STORED
    # One section per take, in the job's order, named as the job names them.
    assert [t["name"] for t in page.takes] == list(NAMES) == list(job.variation_names)
    assert [t["index"] for t in page.takes] == list(range(TAKES))
    plan = json.loads((root / job.name / "plan.json").read_text())
    seeds = [s for chunk in sorted(plan["chunks"], key=lambda c: c["start"]) for s in chunk["seeds"]]
    for v, take in enumerate(page.takes):
        own = [t * TAKES + v for t in range(STEPS)]  # frames v, v+3, v+6, …: this take's, and only these
        assert take["frames"] == own and take["steps"] == list(range(STEPS))
        assert take["links"] == [f"frames/{i:06d}.png" for i in own]
        # Its own video, by its relative name: the one the flow made for this take.
        video = Path(result.videos[take["name"]])
        assert video.name.startswith(f"{job.name}_{take['name']}_{SIZE}x{SIZE}_") and video.parent == report.parent
        assert take["sources"] == [video.name]
        text = "".join(take["text"])
        assert f"{take['name']} #5 · seed {seeds[5 * TAKES + v]}" in text  # each frame's own seed
        assert f"seed offset{job.variations[v].seed_offset:+d}" in text
    # The takes differ: the same time step's thumbnails are not the same picture.
    assert len({re.search(rf'data-frame="{i}".*?src="([^"]+)"', html).group(1) for i in range(TAKES)}) == TAKES
    # No single video or shared contact sheet: those would mix the takes.
    assert 'id="contact-sheet"' not in html and 'id="video"' not in html
    # Schedules and the prompt timeline stay per time step, shared by every take.
    for name in ("zoom", "angle", "strength", "seed"):
        assert f'id="plot-{name}"' in html, name
    assert re.search(rf'<svg class="plot" id="plot-zoom" data-name="zoom" data-frames="{STEPS}"', html)
    assert re.search(rf'<svg class="plot" id="plot-seed" data-name="seed" data-frames="{STEPS}"', html)
    assert f'<div class="timeline" data-frames="{STEPS}">' in html and "seed of v1" in html
    assert f"0–{STEPS - 1}" in html and f"0–{STORED - 1}" not in html


def test_a_take_prompt_with_markup_shows_as_text(rendered):
    _root, _job, _result, report = rendered
    page = parse(report.read_text())
    assert page.tags.count("script") == 1  # the report's own script only
    neon = page.takes[1]
    assert "script" not in neon["tags"] and "b" not in neon["tags"]
    text = "".join(neon["text"])
    assert f"neon {EVIL}" in text and "fog & <b>" in text
    # The thumbnail's tooltip: the frame's prompt with the take's addition, as an attribute value.
    assert any(name == "title" and value.endswith(f"neon {EVIL}") for name, value in page.attributes)


def test_a_take_video_is_found_by_its_name_without_the_manifest_entry(rendered, tmp_path):
    root, job, result, _report = rendered
    copy = tmp_path / job.name
    shutil.copytree(root / job.name, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["videos"]
    manifest["video"] = "gone.mp4"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    videos = {name: Path(path).name for name, path in result.videos.items()}
    (copy / videos["v3"]).unlink()  # one take not encoded (yet)
    # A take named like another's prefix must not claim its video (v1 is not v10).
    (copy / videos["v1"].replace("_v1_", "_v10_")).write_bytes(b"not v1")
    (copy / videos["v1"]).touch()
    page = parse(Path(write_report(str(tmp_path), job.name, preview=False)).read_text())
    assert [t["sources"] for t in page.takes] == [[videos["v1"]], [videos["neon"]], []]
    assert "No video yet" in "".join(page.takes[2]["text"])


def grey(index: int) -> int:
    """A grey level per stored frame, far enough apart for H.264 to keep them apart."""
    return 30 + 12 * index


def test_takes_that_browsers_cannot_play_get_a_preview_each(rendered, tmp_path):
    from framefarm.images import encode_png
    from framefarm.video import probe_video

    root, job, _result, _report = rendered
    copy = tmp_path / job.name
    shutil.copytree(root / job.name, copy, ignore=shutil.ignore_patterns("*.mp4", "report.html"))
    for index in range(STORED):  # each stored frame a flat grey of its own, so a preview tells whose frames it holds
        (copy / "frames" / f"{index:06d}.png").write_bytes(encode_png(np.full((SIZE, SIZE, 3), grey(index), np.uint8)))
    document = json.loads((copy / "job.json").read_text())
    document["output"]["codec"] = "hap"
    (copy / "job.json").write_text(json.dumps(document))
    hap = {name: f"{job.name}_{name}_{SIZE}x{SIZE}_24fps_{STEPS}f_hap.mov" for name in NAMES}
    for name in NAMES:  # stand-ins for the HAP deliverables: the report only needs to know they are there
        (copy / hap[name]).write_bytes(b"hap")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["videos"] = {name: str(copy / hap[name]) for name in NAMES}
    manifest["video"] = manifest["videos"]["v1"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    html = Path(write_report(str(tmp_path), job.name)).read_text()
    page = parse(html)
    for v, take in enumerate(page.takes):
        preview = copy / f"report-preview_{take['name']}.mp4"
        assert take["sources"] == [preview.name]
        assert f"{hap[take['name']]} (hap)" in "".join(take["text"])
        assert probe_video(preview).frames == STEPS
        # The preview is this take's frames, in order: each decoded frame is the grey level of t·V + v.
        capture = cv2.VideoCapture(str(preview))
        levels = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            levels.append(float(image.mean()))
        capture.release()
        assert levels == pytest.approx([grey(t * TAKES + v) for t in range(STEPS)], abs=3)
    assert not (copy / "report-preview.mp4").exists()


def _partial(root: Path, done: list[int], *, plan: bool = True) -> str:
    """A job with variations halfway through: job.json (and plan.json), some stored frames, no manifest."""
    from framefarm.animation.plan import plan_job
    from framefarm.images import encode_png
    from framefarm.storage import FrameStore

    job = variation_job("takes-live")
    made = plan_job(job, renderer="preview@1", chunk_size=2 * TAKES)
    store = FrameStore(str(root), job.name)
    store.write_json("job.json", job.model_dump(mode="json"))
    if plan:
        store.write_json("plan.json", made.summary())
    keys = made.frame_keys
    for index in done:
        image = np.full((SIZE, SIZE, 3), (index * 13) % 255, np.uint8)
        store.commit_frame(index, encode_png(image), key=keys[index], seed=index, width=SIZE, height=SIZE)
    return job.name


@pytest.mark.parametrize("plan", [True, False], ids=["plan", "job-only"])
def test_progress_of_a_job_with_takes_counts_stored_frames(tmp_path, plan):
    import os
    import time

    done = list(range(8))  # time steps 0 and 1 of every take, step 2 of the first two
    name = _partial(tmp_path, done, plan=plan)
    now = time.time()
    for i, index in enumerate(done):
        os.utime(tmp_path / name / "manifest" / f"{index:06d}.json", (now - 20 + i, now - 20 + i))
    html = Path(write_report(str(tmp_path), name)).read_text()
    page = parse(html)
    assert page.body["data-frames"] == str(STORED) and page.body["data-done"] == "8"
    assert f"8/{STORED} frames" in html and 'class="badge running"' in html
    assert 'title="44 %"' in html  # 8 of 18 stored frames, not 8 of 6
    assert [t["name"] for t in page.takes] == list(NAMES)
    assert [t["frames"] for t in page.takes] == [[0, 3, 6], [1, 4, 7], [2, 5]]
    texts = ["".join(t["text"]) for t in page.takes]
    assert f"3/{STEPS} frames" in texts[0] and f"3/{STEPS} frames" in texts[1] and f"2/{STEPS} frames" in texts[2]
    assert all("No video yet" in text for text in texts)
    # The latest frame is stored frame 7: time step 2 of the second take.
    assert 'alt="frame 7"' in html and "frame 2 of neon (stored frame 7)" in html
    progress = store_progress(str(tmp_path), name, now=now)
    assert (progress.frames, progress.done, progress.state) == (STORED, 8, "running")
    assert progress.fraction == pytest.approx(8 / STORED)
