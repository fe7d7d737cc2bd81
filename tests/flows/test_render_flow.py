"""The whole render through the Prefect flow (a temporary Prefect server, the real ffmpeg)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from framefarm.flows.render import render_job
from framefarm.job import job_from_preset
from framefarm.presets import preset_names
from framefarm.video import probe_video

pytestmark = pytest.mark.usefixtures("prefect_server")


def frame_hashes(root: Path, job: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / job / "frames").glob("*.png"))}


def test_render_writes_frames_manifest_and_an_exact_video(tmp_path):
    job = job_from_preset("zoom-tunnel", ["frames=12", "width=128", "height=96"])
    result = render_job(job, backend="preview", out=str(tmp_path), chunk_size=5)
    assert result.frames == 12 and result.rendered == 12 and result.reused == 0
    assert sorted(frame_hashes(tmp_path, "zoom-tunnel")) == [f"{i:06d}.png" for i in range(12)]
    info = probe_video(result.video)
    assert (info.frames, info.width, info.height, info.fps) == (12, 128, 96, 24.0)
    manifest = (tmp_path / "zoom-tunnel" / "manifest.json").read_text()
    assert '"index": 11' in manifest


def test_chunks_json_and_timings_json_hold_the_same_chunk_rows(tmp_path):
    """Both files come from each ChunkResult's row: timings.json only adds the chunk's frame range."""
    import json

    job = job_from_preset("zoom-tunnel", ["frames=6", "width=64", "height=64"])
    result = render_job(job, backend="preview", out=str(tmp_path), chunk_size=3)
    chunks = json.loads((tmp_path / job.name / "chunks.json").read_text())
    timings = json.loads((tmp_path / job.name / "timings.json").read_text())["chunks"]
    assert chunks == [r.to_json() for r in result.chunks] and [c["index"] for c in chunks] == [0, 1]
    assert [{k: v for k, v in t.items() if k not in ("start", "stop")} for t in timings] == chunks
    assert [(t["start"], t["stop"]) for t in timings] == [(0, 3), (3, 6)]


def test_same_frames_twice_and_across_chunk_sizes(tmp_path):
    job = job_from_preset("zoom-tunnel", ["frames=10", "width=96", "height=96"])
    render_job(job, backend="preview", out=str(tmp_path / "a"), chunk_size=3)
    render_job(job, backend="preview", out=str(tmp_path / "b"), chunk_size=3)
    render_job(job, backend="preview", out=str(tmp_path / "c"), chunk_size=10)
    a = frame_hashes(tmp_path / "a", job.name)
    assert len(a) == 10
    assert a == frame_hashes(tmp_path / "b", job.name) == frame_hashes(tmp_path / "c", job.name)


def test_rerun_reuses_finished_frames_and_redoes_only_lost_ones(tmp_path):
    job = job_from_preset("zoom-tunnel", ["frames=8", "width=64", "height=64"])
    first = render_job(job, backend="preview", out=str(tmp_path), chunk_size=4)
    original = frame_hashes(tmp_path, job.name)
    again = render_job(job, backend="preview", out=str(tmp_path), chunk_size=4)
    assert (again.rendered, again.reused) == (0, 8)
    # Lose one frame (and damage another): the cached chunk results no longer agree with the manifest.
    (tmp_path / job.name / "frames" / "000005.png").unlink()
    (tmp_path / job.name / "frames" / "000002.png").write_bytes(b"corrupted")
    repaired = render_job(job, backend="preview", out=str(tmp_path), chunk_size=4)
    assert repaired.rendered == 2
    assert frame_hashes(tmp_path, job.name) == original
    assert first.video == repaired.video


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_renders_with_the_preview(tmp_path, name):
    preset = job_from_preset(name)
    # A BPM-locked preset must stay a whole number of beats: one beat's frames there, else 6 frames.
    frames = round(preset.fps * 60 / preset.output.bpm) if preset.output.bpm else 6
    job = job_from_preset(name, [f"frames={frames}", "width=96", "height=64"])
    result = render_job(job, backend="preview", out=str(tmp_path))
    assert probe_video(result.video).frames == frames


def test_video2video_reads_a_real_video_file(tmp_path):
    from framefarm.video import write_video_frames
    from framefarm.renderers.testcard import source_testcard

    source = write_video_frames((source_testcard(i, 160, 120, 30) for i in range(60)), tmp_path / "src.mp4",
                           width=160, height=120, fps=30)
    job = job_from_preset("video-restyle", [f"source.video={str(source)!r}".replace("'", '"'), "frames=15",
                                            "fps=15", "width=96", "height=64"])
    result = render_job(job, backend="preview", out=str(tmp_path / "out"))
    assert probe_video(result.video).frames == 15
    assert len(list((tmp_path / "out" / job.name / "source").glob("*.png"))) == 15


@pytest.mark.slow
def test_render_and_resume_on_s3_match_the_local_render(tmp_path, s3_bucket):
    import fsspec

    job = job_from_preset("zoom-tunnel", ["frames=8", "width=64", "height=64", "name=s3-tunnel"])
    local = render_job(job, backend="preview", out=str(tmp_path / "local"), chunk_size=3)
    remote = render_job(job, backend="preview", out=s3_bucket, chunk_size=3)
    assert remote.video.startswith("s3://framefarm-test/s3-tunnel/")
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    remote_frames = {
        name.rsplit("/", 1)[-1]: hashlib.sha256(fs.cat_file(name)).hexdigest()
        for name in fs.ls("framefarm-test/s3-tunnel/frames", detail=False)
    }
    assert remote_frames == frame_hashes(tmp_path / "local", "s3-tunnel")
    fs.get(remote.video, str(tmp_path / "remote.mp4"))
    assert probe_video(tmp_path / "remote.mp4").frames == 8
    # Resume on S3: lose a frame, rerun, only it is rendered again.
    fs.rm("framefarm-test/s3-tunnel/frames/000004.png")
    again = render_job(job, backend="preview", out=s3_bucket, chunk_size=3)
    assert (again.rendered, again.reused) == (1, 7)
    assert local.frames == again.frames
