"""ffmpeg encode/decode with the real binary."""

from __future__ import annotations

import numpy as np
import pytest

from framefarm.errors import RenderError
from framefarm.video import read_video_frames, write_video_frames, output_name, probe_video
from framefarm.video.ffmpeg import available_encoders


def gradient_frames(count: int, width: int = 64, height: int = 48):
    for i in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = (np.arange(width) * 4 + i * 10) % 256
        frame[..., 1] = i * 20 % 256
        yield frame


def test_encoded_video_has_exact_frames_size_and_fps(tmp_path):
    path = write_video_frames(gradient_frames(13), tmp_path / "clip.mp4", width=64, height=48, fps=25)
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.fps) == (13, 64, 48, 25.0)
    assert not list(tmp_path.glob("*.partial*"))


def test_decode_resamples_and_crops(tmp_path):
    path = write_video_frames(gradient_frames(10), tmp_path / "clip.mp4", width=64, height=48, fps=10)
    frames = list(read_video_frames(path, width=32, height=32, fps=5))
    assert len(frames) == 5
    assert frames[0].shape == (32, 32, 3)


def test_bad_frame_shape_is_an_error_and_leaves_no_file(tmp_path):
    frames = [np.zeros((48, 64, 3), np.uint8), np.zeros((10, 10, 3), np.uint8)]
    with pytest.raises(RenderError, match=r"frame 1 is uint8 \(10, 10, 3\)"):
        write_video_frames(frames, tmp_path / "clip.mp4", width=64, height=48, fps=25)
    assert list(tmp_path.iterdir()) == []


def test_stopping_a_decode_early_leaves_no_ffmpeg_running(tmp_path):
    import psutil

    path = write_video_frames(gradient_frames(30), tmp_path / "clip.mp4", width=64, height=48, fps=25)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    reader = read_video_frames(path, width=64, height=48)
    next(reader)
    assert len(psutil.Process().children(recursive=True)) == len(before) + 1
    reader.close()
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before


def test_output_name_carries_size_fps_and_frames():
    assert output_name("tunnel", width=512, height=288, fps=29.97, frames=96) == "tunnel_512x288_29.97fps_96f.mp4"


def test_bundled_ffmpeg_has_the_encoders_framefarm_uses():
    assert {"libx264", "libx265", "prores_ks", "hap"} <= available_encoders()
