"""Every encode preset with the real ffmpeg: frame count, size, pixel format, colours, HAP playback, size rules."""

from __future__ import annotations

import numpy as np
import psutil
import pytest

from framefarm.errors import InputError, RenderError
from framefarm.video import read_video_frames, write_video_frames, output_name, probe_video
from framefarm.video.codecs import CODECS, fit_size, get_codec
from framefarm.video.finish import finish, resolve_output_path
from framefarm.video.frames import frame_folder
from framefarm.video.verify import decoded_frame_count, verify_output
from tests.video.conftest import pattern_frames

# DNxHR refuses frames under 256x120, so the shared set is that size (still tiny: 6 frames).
WIDTH, HEIGHT, COUNT, FPS = 256, 144, 6, 25


@pytest.fixture(scope="module")
def shared_frames():
    return pattern_frames(COUNT, WIDTH, HEIGHT)


@pytest.mark.parametrize("name", list(CODECS))
def test_every_preset_decodes_to_the_planned_frames_size_and_pixel_format(tmp_path, shared_frames, name):
    codec = CODECS[name]
    result = finish(shared_frames, tmp_path, fps=FPS, codec=name, name="clip")
    assert result.verification is not None and result.verification.ok
    if codec.is_sequence:
        assert result.path.is_dir() and len(list(result.path.glob("*.png"))) == COUNT
        decoded = list(frame_folder(result.path))
        assert decoded[0].shape == (HEIGHT, WIDTH, 3)
        assert all(np.array_equal(a, b) for a, b in zip(decoded, shared_frames))  # lossless
        return
    assert result.path.suffix == codec.suffix
    info = probe_video(result.path)
    assert (info.frames, info.width, info.height) == (COUNT, WIDTH, HEIGHT)
    assert info.pix_fmt == codec.decoded_pix_fmt[0]
    assert info.fps == 25.0
    assert not list(tmp_path.glob("*.partial*"))


@pytest.mark.parametrize("name", ["hap", "hapq", "hapalpha"])
def test_hap_output_plays_in_ffmpeg_and_looks_like_its_frames(tmp_path, shared_frames, name):
    path = finish(shared_frames, tmp_path / "clip", fps=FPS, codec=name).path
    assert path.suffix == ".mov"
    decoded = list(read_video_frames(path, width=WIDTH, height=HEIGHT))
    assert len(decoded) == COUNT
    errors = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(decoded, shared_frames)]
    assert max(errors) < 6, errors  # DXT block compression is lossy, but close


@pytest.mark.parametrize("name,pix_fmt", [("prores4444", "yuva444p12le"), ("hapalpha", "rgba"), ("png", "rgba")])
def test_alpha_is_kept_by_the_presets_that_carry_it(tmp_path, name, pix_fmt):
    frames = pattern_frames(4, 64, 48, alpha=True)
    result = finish(frames, tmp_path / "clip", fps=FPS, codec=name)
    assert result.verification.pix_fmt == pix_fmt
    if name == "png":
        decoded = list(frame_folder(result.path, alpha=True))
    else:
        decoded = list(read_video_frames(result.path, width=64, height=48, alpha=True))
    alpha = decoded[1][..., 3].astype(int)
    assert abs(alpha[:, 40:].mean() - 128) < 3 and alpha[:, :8].mean() > 250


def test_alpha_frames_into_a_preset_without_alpha_are_flattened_with_a_note(tmp_path):
    result = finish(pattern_frames(3, alpha=True), tmp_path / "clip", fps=FPS, codec="h264")
    assert any("alpha is dropped" in note for note in result.notes)
    assert probe_video(result.path).frames == 3


@pytest.mark.parametrize("name", ["h264", "prores", "webm", "hapq", "png"])
def test_colours_survive_the_round_trip_with_rec709(tmp_path, name):
    colours = [(200, 50, 30), (30, 180, 60), (20, 40, 220), (250, 250, 20)]
    frames = [np.full((48, 64, 3), colour, np.uint8) for colour in colours]
    path = finish(frames, tmp_path / "clip", fps=FPS, codec=name).path
    decoded = list(frame_folder(path)) if name == "png" else list(read_video_frames(path, width=64, height=48))
    worst = max(np.abs(frame[24, 32].astype(int) - colour).max() for frame, colour in zip(decoded, colours))
    assert worst <= 3  # BT.601 decoding of BT.709 data (or the reverse) is off by 10+ on these


def test_hap_sides_are_cropped_to_multiples_of_4_with_a_note(tmp_path):
    result = finish(pattern_frames(3, 66, 50), tmp_path, fps=FPS, codec="hap", name="odd")
    assert (result.width, result.height) == (64, 48)
    assert result.path.name == "odd_64x48_25fps_3f_hap.mov"
    assert any("multiples of 4" in note and "66x50" in note for note in result.notes)
    assert probe_video(result.path).frames == 3


def test_fit_size_rules():
    assert fit_size(get_codec("hap"), 1920, 1080) == (1920, 1080, None)
    assert fit_size(get_codec("h264"), 1921, 1081)[:2] == (1920, 1080)
    assert fit_size(get_codec("prores"), 1921, 1081)[:2] == (1920, 1081)
    assert fit_size(get_codec("gif"), 333, 77)[:2] == (333, 77)
    with pytest.raises(InputError, match="minimum of 256x120"):
        fit_size(get_codec("dnxhr"), 64, 48)


def test_unknown_codec_lists_the_presets():
    with pytest.raises(InputError, match="Use one of: h264, h265, prores, prores4444, hap, hapq, hapalpha, dnxhr"):
        get_codec("avi")


def test_output_suffix_comes_from_the_codec_and_a_wrong_one_is_refused(tmp_path):
    assert resolve_output_path(tmp_path / "clip", get_codec("prores")).name == "clip.mov"
    assert resolve_output_path(tmp_path / "clip", get_codec("webm")).name == "clip.webm"
    assert resolve_output_path(tmp_path / "clip", get_codec("png")).name == "clip"
    assert resolve_output_path(tmp_path / "clip.mkv", get_codec("h264")).name == "clip.mkv"
    with pytest.raises(InputError, match="hap writes .mov files, not .mp4"):
        resolve_output_path(tmp_path / "clip.mp4", get_codec("hap"))


def test_names_carry_size_fps_frames_and_for_loops_bpm_beats_and_codec():
    assert output_name("loop", width=1920, height=1080, fps=25, frames=375, suffix=".mov", bpm=128, beats=32,
                       codec="hapq") == "loop_1920x1080_25fps_375f_128bpm_32beats_hapq.mov"
    assert output_name("clip", width=64, height=48, fps=23.976, frames=5, suffix=".webm",
                       codec="webm") == "clip_64x48_23.976fps_5f.webm"


def test_a_missing_encoder_is_named_before_any_frame_is_encoded(tmp_path, monkeypatch):
    import framefarm.video.ffmpeg as ffmpeg_module

    monkeypatch.setattr(ffmpeg_module, "available_encoders", lambda: frozenset({"libx264"}))
    pulled = []

    def frames():
        pulled.append(1)
        yield np.zeros((48, 64, 3), np.uint8)

    with pytest.raises(RenderError, match="lacks the encoder\\(s\\) prores_ks"):
        write_video_frames(frames(), tmp_path / "x.mov", width=64, height=48, fps=25, codec="prores")
    assert pulled == []


def test_a_failure_mid_encode_leaves_no_ffmpeg_and_no_file(tmp_path):
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    def frames():
        yield from pattern_frames(3)
        raise RuntimeError("renderer died")

    with pytest.raises(RuntimeError, match="renderer died"):
        write_video_frames(frames(), tmp_path / "x.mov", width=64, height=48, fps=25, codec="prores")
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before
    assert list(tmp_path.iterdir()) == []


def test_verification_reports_every_mismatch(tmp_path):
    path = write_video_frames(pattern_frames(5), tmp_path / "clip.mp4", width=64, height=48, fps=25)
    assert decoded_frame_count(path) == 5
    result = verify_output(path, codec=get_codec("h264"), frames=6, width=64, height=48, fps=30)
    assert not result.ok
    text = "; ".join(result.problems)
    assert "5 frames decoded, 6 planned" in text and "25 fps, planned 30" in text
