"""The HTTP API against the real server process (``framefarm api``, uvicorn) on localhost.

The server's render processes use the session's temporary Prefect server (``PREFECT_API_URL``), as they would a
farm's, so each job skips the ephemeral server's start-up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import psutil
import pytest

from framefarm.api.osc import CLIP_READY, decode_message
from framefarm.video import probe_video

TOKEN = "test-token-0123456789abcdef"
TINY = {"preset": "zoom-tunnel", "name": "api-tunnel", "frames": 6, "width": 64, "height": 64}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def osc_listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(30)
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def media_root(tmp_path_factory):
    """The API's --media-root: a short source clip in a folder reached through a symlink."""
    from framefarm.video.encode import write_video_frames

    root = tmp_path_factory.mktemp("api-media")
    (root / "real").mkdir()
    frames = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(6)]
    write_video_frames(frames, root / "real" / "clip.mp4", width=64, height=64, fps=24)
    (root / "clips").symlink_to(root / "real", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def server(prefect_server, tmp_path_factory, osc_listener, media_root):
    """``framefarm api`` in its own process; yields (base URL, output root, process)."""
    from prefect.settings import PREFECT_API_URL

    out = tmp_path_factory.mktemp("api-out")
    port = _free_port()
    env = {**os.environ, "FRAMEFARM_API_TOKEN": TOKEN, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    log = open(out.parent / "api-server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "framefarm", "api", "--host", "127.0.0.1", "--port", str(port), "--out", str(out),
         "--osc", f"127.0.0.1:{osc_listener.getsockname()[1]}", "--media-root", str(media_root),
         "--osc-allow", f"127.0.0.1:{osc_listener.getsockname()[1]}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the API did not start:\n{(out.parent / 'api-server.log').read_text()[-3000:]}")
        time.sleep(0.2)
    try:
        yield base, out, process
    finally:
        # A graceful stop (what Ctrl-C or systemd does) ends the server and every render it started.
        children = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail("the API server did not stop on SIGTERM")
        finally:
            log.close()
        time.sleep(0.5)
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture()
def client(server):
    base, _out, _process = server
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        yield c


def wait_for(client: httpx.Client, job_id: str, states: set[str], timeout: float = 180.0, **more) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}").json()
        if status["state"] in states and all(check(status) for check in more.values()):
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not in {states} after {timeout:.0f} s: {status}")


def test_health_is_open_and_everything_else_needs_the_token(server):
    base, _out, _process = server
    health = httpx.get(f"{base}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    anonymous = httpx.post(f"{base}/jobs", json={"job": TINY})
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(f"{base}/jobs", json={"job": TINY}, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403
    for path in ("/jobs", "/jobs/x", "/openapi.json", "/jobs/x/video"):
        assert httpx.get(f"{base}{path}").status_code == 401, path
    schema = httpx.get(f"{base}/openapi.json", headers={"X-API-Key": TOKEN})
    assert schema.status_code == 200
    document = schema.json()
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/jobs/{job_id}/video"} <= set(document["paths"])
    assert "JobSpec" in document["components"]["schemas"] and "DeforumJob" in document["components"]["schemas"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(document["components"]["securitySchemes"])


@pytest.mark.parametrize(("body", "loc"), [
    ({"job": {**TINY, "frames": "many"}}, ["body", "job", "frames"]),
    ({"job": {**TINY, "framez": 3}}, ["body", "job", "framez"]),
    ({"job": {"kind": "deforum", "name": "x", "motion": {"zoom": "0:(1.0"}}}, ["body", "job", "motion", "zoom"]),
    ({"job": {**TINY, "output": {"codec": "mpeg1"}}}, ["body", "job", "output", "codec"]),
    ({"job": {"preset": "no-such-preset"}}, ["body", "job", "preset"]),
    ({"job": {"name": "x"}}, ["body", "job", "kind"]),
    ({"job": TINY, "overrides": ["frames"]}, ["body", "overrides"]),
    ({"job": TINY, "chunk_size": 0}, ["body", "chunk_size"]),
    ({"job": TINY, "backend": "magic"}, ["body", "backend"]),
    ({"job": {**TINY, "init_image": "/no/such/image.png"}}, ["body", "job", "init_image"]),
    ({"jobb": TINY}, ["body", "job"]),
])
def test_malformed_job_json_gets_422_naming_the_field(client, body, loc):
    answer = client.post("/jobs", json=body)
    assert answer.status_code == 422, answer.text
    assert loc in [problem["loc"] for problem in answer.json()["detail"]], answer.json()


def test_unparseable_json_gets_422(client):
    answer = client.post("/jobs", content=b'{"job": {"preset": "zoom-tunnel",', headers={"Content-Type":
                                                                                         "application/json"})
    assert answer.status_code == 422 and answer.json()["detail"][0]["type"] == "json_invalid"


def test_a_submitted_job_completes_and_its_video_downloads(client, server, osc_listener, tmp_path):
    _base, out, _process = server
    submitted = client.post("/jobs", json={"job": TINY, "chunk_size": 3})
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert submitted.headers["location"] == f"/jobs/{job['id']}" and job["state"] in ("queued", "running")
    # A second job waits behind it (one render at a time) and is cancelled before it starts.
    queued = client.post("/jobs", json={"job": {**TINY, "name": "never-rendered"}}).json()
    cancelled = client.post(f"/jobs/{queued['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"

    done = wait_for(client, job["id"], {"completed", "failed"})
    assert done["state"] == "completed", done["error"]
    assert (done["done"], done["frames"], done["progress"]) == (6, 6, 1.0)
    assert done["video"] == "api-tunnel_64x64_24fps_6f.mp4" and done["report"] == "report.html"

    video = client.get(done["links"]["video"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    saved = tmp_path / done["video"]
    saved.write_bytes(video.content)
    info = probe_video(saved)
    assert (info.frames, info.width, info.height, info.fps) == (6, 64, 64, 24.0)
    assert saved.read_bytes() == (out / "api-tunnel" / done["video"]).read_bytes()

    report = client.get(done["links"]["report"])
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "<video" in report.text and report.text.count('class="thumb"') == 6
    latest = client.get(done["links"]["latest_frame"])
    assert latest.status_code == 200 and latest.content[:8] == b"\x89PNG\r\n\x1a\n"
    names = {f["name"] for f in client.get(done["links"]["files"]).json()}
    assert {"job.json", "manifest.json", "report.html", done["video"]} <= names
    assert client.get(f"/jobs/{job['id']}/files/..%2Fjob.json").status_code == 404
    assert client.post(done["links"]["cancel"]).status_code == 409

    # The OSC "clip ready" message: path, fps, frames, BPM, beats, job.
    address, arguments = decode_message(osc_listener.recvfrom(65536)[0])
    assert address == CLIP_READY
    assert arguments == [str(out / "api-tunnel" / done["video"]), 24.0, 6, 0.0, 0, "api-tunnel"]

    assert client.get(f"/jobs/{queued['id']}").json()["state"] == "cancelled"
    assert not (out / "never-rendered").exists()
    listed = {j["id"]: j["state"] for j in client.get("/jobs").json()}
    assert listed[job["id"]] == "completed" and listed[queued["id"]] == "cancelled"
    assert client.get("/jobs/0123").status_code == 404


def test_a_job_that_fails_while_rendering_says_why(client):
    # Valid as a spec, refused by the renderer: the diffusers backend needs a checkpoint.
    job = client.post("/jobs", json={"job": {**TINY, "name": "no-model"}, "backend": "diffusers"}).json()
    failed = wait_for(client, job["id"], {"failed", "completed"})
    assert failed["state"] == "failed"
    assert failed["error"].startswith("invalid input") and "model.checkpoint" in failed["error"]
    assert client.get(failed["links"]["video"]).status_code == 409


def test_cancel_stops_a_running_render_and_keeps_its_frames(client, server):
    _base, out, process = server
    job = client.post("/jobs", json={"job": {**TINY, "name": "long-tunnel", "frames": 2000}, "chunk_size": 50})
    assert job.status_code == 202
    job_id = job.json()["id"]
    running = wait_for(client, job_id, {"running"}, started=lambda s: s["done"] >= 2)
    assert running["done"] < 2000
    renders = [p for p in psutil.Process(process.pid).children(recursive=True) if "render" in " ".join(p.cmdline())]
    assert renders
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 200
    stopped = wait_for(client, job_id, {"cancelled", "completed", "failed"}, timeout=60)
    assert stopped["state"] == "cancelled"
    time.sleep(0.5)
    assert not [p for p in renders if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    kept = len(list((out / "long-tunnel" / "frames").glob("*.png")))
    assert 2 <= kept < 2000


def test_a_source_under_the_media_root_renders_and_one_outside_is_refused(client, server, media_root, osc_listener):
    _base, out, _process = server
    port = osc_listener.getsockname()[1]
    job = {"kind": "video2video", "name": "api-source", "frames": 6, "width": 64, "height": 64, "batch_size": 2,
           "source": {"video": "clips/clip.mp4"}}
    outside = client.post("/jobs", json={"job": {**job, "source": {"video": str(media_root.parent)}}})
    assert outside.status_code == 422 and outside.json()["detail"][0]["field"] == "source.video"
    assert not (out / "api-source").exists()

    submitted = client.post("/jobs", json={"job": job, "osc": f"127.0.0.1:{port}"})
    assert submitted.status_code == 202, submitted.text
    done = wait_for(client, submitted.json()["id"], {"completed", "failed"})
    assert done["state"] == "completed", done["error"]
    rendered = client.get(f"/jobs/{done['id']}/files/job.json").json()
    assert rendered["source"]["video"] == str(media_root / "real" / "clip.mp4")  # resolved where it was checked
    # The job's own allowed OSC target gets the clip too (beside the operator's --osc, here the same listener).
    names = [decode_message(osc_listener.recvfrom(65536)[0])[1][-1] for _ in range(2)]
    assert names == ["api-source", "api-source"]
