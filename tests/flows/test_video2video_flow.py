"""video2video through the flow, around the renderer: the source's sound kept for finishing, and
``batch_size = "auto"`` resolved once per job. The preview backend renders (the stages under test are the flow's)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framefarm.animation.plan import plan_job
from framefarm.flows.render import render_job
from framefarm.job import job_from_preset
from framefarm.video import probe_video
from framefarm.video.decode import decode_audio
from framefarm.video.ffmpeg import run_ffmpeg

pytestmark = pytest.mark.usefixtures("prefect_server")


def _job(*extra: str):
    return job_from_preset("video-restyle", ["width=64", "height=64", "fps=4", "frames=4", "controlnet=[]",
                                             *extra])


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def test_source_sound_is_cut_like_the_frames_and_muxed_unless_turned_off(tmp_path):
    # 2 s of test pattern at 12 fps with a 440 Hz tone whose amplitude ramps linearly 0 → 1 over the clip,
    # so the level at any moment of the output says which moment of the source it came from.
    clip = tmp_path / "clip.mp4"
    run_ffmpeg(["-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=12:duration=2",
                "-f", "lavfi", "-i", "aevalsrc=exprs='t/2*sin(2*PI*440*t)':s=48000:d=2",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(clip)], what="make a clip")
    assert probe_video(clip, count=False).has_audio
    # Source frames 2…5 at 4 fps: 0.5 s … 1.5 s of the clip.
    job = _job(f'source.video="{clip}"', "source.start_frame=2")
    out = tmp_path / "out"
    video = render_job(job, backend="preview", out=str(out), chunk_size=4).video
    assert (out / job.name / "source" / "audio.flac").is_file()
    info = probe_video(video)
    assert info.has_audio and info.frames == 4
    sound = decode_audio(video, rate=48000)
    assert abs(len(sound) / 48000 - 1.0) < 0.01  # frames / fps seconds
    # The tone's amplitude at 0.55 s and 1.45 s of the source (RMS of a sine = amplitude / √2).
    head, tail = _rms(sound[: 4800]), _rms(sound[-4800:])
    assert head == pytest.approx(0.55 / 2 / np.sqrt(2), abs=0.03)
    assert tail == pytest.approx(1.45 / 2 / np.sqrt(2), abs=0.03)

    # An explicit output.audio wins over the source's sound (a steady tone at 0.2).
    tone = tmp_path / "tone.wav"
    run_ffmpeg(["-y", "-loglevel", "error", "-f", "lavfi", "-i", "aevalsrc=exprs='0.2*sin(2*PI*220*t)':s=48000:d=3",
                str(tone)], what="make a tone")
    explicit = render_job(job.model_copy(update={"output": job.output.model_copy(update={"audio": str(tone)})}),
                          backend="preview", out=str(out), chunk_size=4)
    assert explicit.rendered == 0  # the sound is not part of the frames
    assert _rms(decode_audio(explicit.video, rate=48000)[4800:-4800]) == pytest.approx(0.2 / np.sqrt(2), abs=0.02)

    # output.source_audio = false: a silent video.
    silent = job_from_preset("video-restyle", ["width=64", "height=64", "fps=4", "frames=4", "controlnet=[]",
                                               f'source.video="{clip}"', "source.start_frame=2",
                                               "output.source_audio=false"])
    assert not probe_video(render_job(silent, backend="preview", out=str(out), chunk_size=4).video).has_audio


def test_auto_batch_size_is_resolved_once_per_job_and_recorded(tmp_path):
    from framefarm.renderers.batch_size import CPU_BATCH_SIZE, resolve_batch_size

    job = _job('batch_size="auto"')
    # On this CPU box: the fixed, documented value (free GPU memory is asked of a child process, which finds none).
    choice = resolve_batch_size(job, "diffusers")
    assert (choice.batch_size, choice.device) == (CPU_BATCH_SIZE, "cpu")

    out = tmp_path / "out"
    render_job(job, backend="preview", out=str(out), chunk_size=4)
    folder = out / job.name
    record = json.loads((folder / "batch_size.json").read_text())
    assert (record["requested"], record["batch_size"], record["device"]) == ("auto", CPU_BATCH_SIZE, "cpu")
    assert json.loads((folder / "job.json").read_text())["batch_size"] == CPU_BATCH_SIZE
    assert json.loads((folder / "manifest.json").read_text())["batch_size"]["batch_size"] == CPU_BATCH_SIZE
    # The frame keys are those of the same job with the number written in.
    fixed = plan_job(_job(f"batch_size={CPU_BATCH_SIZE}"), renderer="preview@1")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {f["index"]: f["key"] for f in manifest["frames"]} == fixed.frame_keys

    # A later run reuses the job's recorded choice, whatever this machine would choose now (here: as if another
    # machine had chosen 2), so every run and worker of the job renders with one batch size.
    (folder / "batch_size.json").write_text(json.dumps({**record, "batch_size": 2}))
    render_job(job, backend="preview", out=str(out), chunk_size=4)
    assert json.loads((folder / "job.json").read_text())["batch_size"] == 2
