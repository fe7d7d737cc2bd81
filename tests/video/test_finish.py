"""finish(): frame folders from any tool, the job flow's encode task, partial outputs and re-runs."""

from __future__ import annotations

import numpy as np
import pytest

from framefarm.errors import InputError
from framefarm.video import read_video_frames, probe_video
from framefarm.video.finish import finish, output_settings
from framefarm.video.frames import frame_folder, natural_key
from tests.video.conftest import pattern_frames


def test_folders_are_read_in_natural_order(frames_dir):
    frames = [np.full((16, 16, 3), 20 * i, np.uint8) for i in range(12)]
    folder = frames_dir(frames)  # f0.png … f11.png: plain sorting would put f10, f11 before f2
    assert [int(f[0, 0, 0]) for f in frame_folder(folder)] == [20 * i for i in range(12)]
    assert sorted(["f10", "f2", "F1"], key=natural_key) == ["F1", "f2", "f10"]


def test_a_folder_becomes_a_video_with_exact_frames(frames_dir, tmp_path):
    folder = frames_dir(pattern_frames(7))
    result = finish(folder, tmp_path / "out" / "clip", fps=12, codec="prores")
    assert result.path == tmp_path / "out" / "clip.mov"
    info = probe_video(result.path)
    assert (info.frames, info.width, info.height, info.fps) == (7, 64, 48, 12.0)


def test_a_frame_of_another_size_is_an_input_error_naming_it(frames_dir, tmp_path):
    frames = pattern_frames(4)
    frames[2] = np.zeros((32, 32, 3), np.uint8)
    folder = frames_dir(frames)
    message = r"frame: is 32x32 but the first frame \(f0\.png\) is 64x48 \(got '.*f2\.png'\)"
    with pytest.raises(InputError, match=message):
        finish(folder, tmp_path / "clip", fps=25)
    assert not list(tmp_path.glob("clip*"))


def test_an_empty_folder_is_an_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no image files"):
        finish(tmp_path / "empty", tmp_path / "clip", fps=25)


def test_iterables_of_unknown_length_work_too(tmp_path):
    result = finish((frame for frame in pattern_frames(5)), tmp_path, fps=25, codec="webm", name="gen")
    assert result.path.name == "gen_64x48_25fps_5f.webm" and result.frames == 5


def test_a_png_sequence_rerun_replaces_the_old_folder_whole(tmp_path):
    first = finish(pattern_frames(6), tmp_path / "seq", fps=25, codec="png")
    second = finish(pattern_frames(3), tmp_path / "seq", fps=25, codec="png")
    assert first.path == second.path and len(list(second.path.iterdir())) == 3
    assert not list(tmp_path.glob("*.partial*")) and not list(tmp_path.glob("*.old"))


def test_the_flow_encode_task_uses_the_jobs_output_settings(tmp_path):
    from framefarm.animation.plan import plan_job
    from framefarm.flows.tasks import encode_video
    from framefarm.images import encode_png
    from framefarm.job import job_from_preset
    from framefarm.storage import FrameStore

    job = job_from_preset("vj-4beat-loop", ["name=loop", "width=64", "height=64", "output.codec=hapq",
                                            "output.interpolate=2", "output.bpm=120", "output.beats=4"])
    plan = plan_job(job, renderer="preview@1")
    store = FrameStore(str(tmp_path), job.name)
    for i, frame in enumerate(pattern_frames(plan.frames, 64, 64)):
        store.commit_frame(i, encode_png(frame), key=f"k{i}", seed=0, width=64, height=64)
    path = encode_video.fn(plan, job, str(tmp_path))
    # 60 frames at 30 fps, a loop: 2x gives 120 frames at 60 fps, still 4 beats at 120 BPM.
    assert path.endswith("loop/loop_64x64_60fps_120f_120bpm_4beats_hapq.mov")
    info = probe_video(path)
    assert (info.frames, info.fps, info.codec, info.pix_fmt) == (120, 60.0, "hap", "rgb0")
    decoded = list(read_video_frames(path, width=64, height=64))
    assert np.abs(decoded[0].astype(int) - pattern_frames(1, 64, 64)[0]).mean() < 6


def test_output_settings_map_the_job_table():
    from framefarm.job import job_from_preset

    output = job_from_preset("vj-4beat-loop", ["output.loop_close=crossfade", "output.loop_frames=6"]).output
    settings = output_settings(output)
    assert settings["loop"].close == "crossfade" and settings["loop"].frames == 6
    assert settings["codec"] == "h264" and settings["interpolate"] == 1


def test_a_jobs_output_can_be_checked_before_rendering():
    from framefarm.job import job_from_preset
    from framefarm.video.finish import check_job_output

    job = job_from_preset("vj-4beat-loop", ["output.interpolate=2", "output.bpm=120"])
    assert check_job_output(job.frames, job.fps, job.output) == (120, 60.0, 4)
    # The job validator runs the same check, so a loop that isn't whole beats never reaches a GPU.
    with pytest.raises(InputError, match="is 3.33 beats at 120 BPM and 30 fps"):
        job_from_preset("vj-4beat-loop", ["frames=50", "output.bpm=120"])


def test_a_rife_job_validates_where_its_weights_are_not(tmp_path):
    # The frame count needs only the factor; the weights are opened (and checked) by the finish.
    from framefarm.job import job_from_preset

    job = job_from_preset("vj-4beat-loop", ["output.interpolate=2", "output.interpolate_method=rife",
                                            f"output.interpolate_model={tmp_path / 'rife.pt'}"])
    assert job.output.interpolate_method == "rife"
