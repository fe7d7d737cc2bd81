"""What a submitted job may read and where it may send: the real API app (ASGI, in process) with its real runner.

Every refused request must be a 422 naming the field, queue nothing and write nothing; the answer must not depend on
whether a file outside the media roots exists.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from framefarm.api.access import MediaRoots, confine_job, path_fields
from framefarm.api.app import ApiSettings, create_app
from framefarm.api.jobs import JobRequest, validate_request
from framefarm.api.osc import OscTarget
from framefarm.errors import InputError
from framefarm.job import validate_job

TOKEN = "test-token-0123456789abcdef"
TINY = {"preset": "zoom-tunnel", "name": "api-paths", "frames": 4, "width": 64, "height": 64}


@pytest.fixture()
def disk(tmp_path):
    """A media root with an image, a private folder beside it with a secret image, and symlinks climbing out."""
    root, private = tmp_path / "media", tmp_path / "private"
    root.mkdir()
    private.mkdir()
    image = np.full((64, 64, 3), 200, np.uint8)
    cv2.imwrite(str(root / "init.png"), image)
    cv2.imwrite(str(private / "secret.png"), image)
    (private / "secret.pth").write_bytes(b"weights")
    (root / "escape.png").symlink_to(private / "secret.png")
    (root / "escape.pth").symlink_to(private / "secret.pth")
    (root / "escape-dir").symlink_to(private, target_is_directory=True)
    (root / "clips").mkdir()
    (root / "clips" / "inside.png").symlink_to(root / "init.png")
    return root, private


def api(tmp_path: Path, *roots: Path, osc_allow: tuple[str, ...] = ()) -> TestClient:
    settings = ApiSettings(token=TOKEN, out=str(tmp_path / "out"), media=MediaRoots.from_folders(map(str, roots)),
                           osc_allow=tuple(OscTarget.parse(t) for t in osc_allow))
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"})


def assert_nothing_queued(client: TestClient, tmp_path: Path) -> None:
    assert client.get("/jobs").json() == []
    out = tmp_path / "out"
    written = [p for p in out.rglob("*") if p.is_file() and p.parent.name != ".framefarm-api"] if out.exists() else []
    assert written == []  # no job folder, no spec queued (the runner's own state file may exist)


# One job per path field: (field, job over TINY with {path} where the path goes).
PATH_JOBS = [
    ("init_image", {"init_image": "{path}"}),
    ("shots.0.init_image", {"shots": [{"start": 0, "init_image": "{path}"}]}),
    ("source.video", {"preset": None, "kind": "video2video", "source": {"video": "{path}"}}),
    ("controlnet.0.image", {"controlnet": [{"model": "control_canny", "image": "{path}"}]}),
    ("output.audio", {"output": {"audio": "{path}"}}),
    ("output.upscale", {"output": {"upscale": "{pth}"}}),  # a weight file: a path only with its suffix
    ("output.interpolate_model", {"output": {"interpolate": 2, "interpolate_method": "rife",
                                             "interpolate_model": "{path}"}}),
    ("model.models_dir", {"model": {"models_dir": "{path}"}}),
    ("color_coherence.image", {"color_coherence": {"reference": "image", "image": "{path}"}}),
    ("color_coherence.video", {"color_coherence": {"reference": "video", "video": "{path}"}}),
    ("hybrid.video", {"hybrid": {"video": "{path}", "composite": "Normal"}}),
    ("parseq.manifest", {"parseq": {"manifest": "{path}"}}),  # read while the job validates: checked before
]


def job_with(overlay: dict, path: str) -> dict:
    def fill(value):
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, str):
            return value.replace("{path}", path).replace("{pth}", path.replace(".png", ".pth"))
        return value

    job = {**TINY, **fill(overlay)}
    return {k: v for k, v in job.items() if v is not None}


@pytest.mark.parametrize(("field", "overlay"), PATH_JOBS, ids=[f for f, _ in PATH_JOBS])
@pytest.mark.parametrize("where", ["absolute", "dot-dot", "symlink", "symlinked-folder", "home"])
def test_a_path_outside_the_media_roots_is_a_422_naming_the_field_and_nothing_renders(tmp_path, disk, field,
                                                                                       overlay, where):
    root, private = disk
    path = {"absolute": str(private / "secret.png"), "dot-dot": "../private/secret.png",
            "symlink": "escape.png", "symlinked-folder": str(root / "escape-dir" / "secret.png"),
            "home": "~/secret.png"}[where]
    job = job_with(overlay, path)
    with api(tmp_path, root) as client:
        answer = client.post("/jobs", json={"job": job})
        assert answer.status_code == 422, answer.text
        problems = answer.json()["detail"]
        assert [p["field"] for p in problems] == [field], problems
        assert problems[0]["loc"] == ["body", "job", *[int(p) if p.isdigit() else p for p in field.split(".")]]
        message = problems[0]["msg"]
        assert f"is outside the API's media roots ({root})" in message and "Put the file under a media root" in message
        given = path.replace(".png", ".pth") if field == "output.upscale" else path
        assert given in message
        assert str(private) not in message.replace(given, "")  # where a symlink leads is not shown
        assert_nothing_queued(client, tmp_path)


@pytest.mark.parametrize(("field", "overlay"), PATH_JOBS, ids=[f for f, _ in PATH_JOBS])
def test_without_media_roots_every_path_field_is_refused(tmp_path, disk, field, overlay):
    root, _private = disk
    with api(tmp_path) as client:
        answer = client.post("/jobs", json={"job": job_with(overlay, str(root / "init.png"))})
        assert answer.status_code == 422, answer.text
        problems = answer.json()["detail"]
        assert [p["field"] for p in problems] == [field]
        assert "started without --media-root" in problems[0]["msg"] and "--media-root FOLDER" in problems[0]["msg"]
        assert_nothing_queued(client, tmp_path)


@pytest.mark.parametrize(("field", "job"), [
    ("model.checkpoint", {"model": {"checkpoint": "{path}"}}),
    ("model.vae", {"model": {"vae": "{path}"}}),
    ("controlnet.0.model", {"controlnet": [{"model": "{path}"}]}),
    ("checkpoint_schedule", {"checkpoint_schedule": '0: ("{path}")'}),
    ("animatediff.motion_module", {"preset": None, "kind": "animatediff", "animatediff": {"motion_module": "{path}"}}),
    ("animatediff.motion_loras.0.name", {"preset": None, "kind": "animatediff",
                                         "animatediff": {"motion_loras": [{"name": "{path}"}]}}),
])
def test_absolute_model_references_outside_the_roots_are_refused(tmp_path, disk, monkeypatch, field, job):
    root, private = disk
    monkeypatch.delenv("FRAMEFARM_MODELS", raising=False)
    with api(tmp_path, root) as client:
        answer = client.post("/jobs", json={"job": job_with(job, str(private / "model.safetensors"))})
        assert answer.status_code == 422, answer.text
        problems = answer.json()["detail"]
        assert [p["field"] for p in problems] == [field]
        assert "absolute path outside the API's media roots" in problems[0]["msg"]
        assert_nothing_queued(client, tmp_path)


def test_every_bad_field_is_listed_at_once(tmp_path, disk):
    root, _private = disk
    job = {**TINY, "init_image": "/etc/passwd", "output": {"audio": "../x.wav"}}
    with api(tmp_path, root) as client:
        answer = client.post("/jobs", json={"job": job})
    assert answer.status_code == 422
    assert [p["field"] for p in answer.json()["detail"]] == ["init_image", "output.audio"]


def test_the_answer_does_not_tell_whether_a_file_outside_exists(tmp_path, disk):
    root, private = disk
    with api(tmp_path, root) as client:
        present = client.post("/jobs", json={"job": {**TINY, "init_image": str(private / "secret.png")}})
        missing = client.post("/jobs", json={"job": {**TINY, "init_image": str(private / "nothing.png")}})
    assert present.status_code == missing.status_code == 422
    assert present.json()["detail"][0]["msg"].replace("secret", "X") == \
        missing.json()["detail"][0]["msg"].replace("nothing", "X")


def test_osc_targets_come_only_from_the_allow_list(tmp_path, disk):
    root, _private = disk
    with api(tmp_path, root) as closed:
        answer = closed.post("/jobs", json={"job": TINY, "osc": "127.0.0.1:7000"})
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "osc"]
        assert "started without --osc-allow" in answer.json()["detail"][0]["msg"]
        assert_nothing_queued(closed, tmp_path)
    with api(tmp_path, root, osc_allow=("127.0.0.1:7000",)) as client:
        for target in ("127.0.0.1:7001", "10.0.0.5:7000", "localhost:7000"):
            answer = client.post("/jobs", json={"job": TINY, "osc": target})
            assert answer.status_code == 422, target
            assert "not on the API's OSC allow-list (127.0.0.1:7000)" in answer.json()["detail"][0]["msg"]
        assert_nothing_queued(client, tmp_path)


def test_paths_inside_the_roots_are_resolved_where_they_were_checked(tmp_path, disk):
    root, _private = disk
    other = tmp_path / "other-root"
    other.mkdir()
    media = MediaRoots.from_folders([str(root), str(other)])
    job = validate_job({"kind": "deforum", "name": "inside", "frames": 4, "init_image": "clips/../init.png",
                        "shots": [{"start": 0}, {"start": 2, "init_image": str(root / "clips" / "inside.png")}],
                        "color_coherence": {"reference": "image", "image": str(other / "ref.png")},
                        "model": {"checkpoint": "sd15/model.safetensors"}})  # a name in the models folder
    confined = confine_job(job, media)
    assert confined.init_image == str(root / "init.png")
    assert confined.shots[1].init_image == str(root / "init.png")  # the symlink, followed
    assert confined.color_coherence.image == str(other / "ref.png")
    assert confined.model.checkpoint == "sd15/model.safetensors"
    assert {f.field for f in path_fields(confined)} == {"init_image", "shots.1.init_image", "color_coherence.image",
                                                        "model.checkpoint"}


def test_a_media_root_that_is_not_a_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="--media-root: is not a folder"):
        MediaRoots.from_folders([str(tmp_path / "typo")])


def test_the_test_card_is_no_file():
    job = {"kind": "video2video", "name": "card", "frames": 2, "width": 64, "height": 64,
           "source": {"video": "testcard"}}
    assert validate_request(JobRequest(job=job), media=MediaRoots()).source.video == "testcard"
