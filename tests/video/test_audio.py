"""Audio muxed from a file: offset, trimmed or padded to the frames, in sync within one frame."""

from __future__ import annotations

import numpy as np
import pytest

from framefarm.errors import InputError
from framefarm.video import read_video_frames, probe_video
from framefarm.video.audio import audio_filter
from framefarm.video.decode import decode_audio
from framefarm.video.finish import finish
from tests.video.conftest import click_file, write_tone

FPS, COUNT, FLASH = 25, 50, 25  # a white frame at 1.0 s


def flash_frames(count: int = COUNT, flash: int = FLASH) -> list[np.ndarray]:
    frames = [np.zeros((48, 64, 3), np.uint8) for _ in range(count)]
    frames[flash] = np.full((48, 64, 3), 255, np.uint8)
    return frames


def click_time(path) -> float:
    samples = decode_audio(path)
    return float(np.argmax(np.abs(samples) > 0.3)) / 48000


def flash_time(path) -> float:
    brightness = [frame.mean() for frame in read_video_frames(path, width=64, height=48)]
    return int(np.argmax(brightness)) / FPS


@pytest.mark.parametrize("codec,click_at,offset", [
    ("h264", 0.5, 0.5),      # AAC in MP4 (encoder priming handled by the edit list)
    ("prores", 1.5, -0.5),   # PCM in MOV; negative offset skips into the file
    ("webm", 0.25, 0.75),    # Opus in WebM (pre-skip)
    ("hap", 1.0, 0.0),       # PCM in MOV for Resolume
])
def test_a_click_lands_on_its_flash_frame(tmp_path, codec, click_at, offset):
    sound = click_file(tmp_path / "click.wav", click_at)
    result = finish(flash_frames(), tmp_path / "clip", fps=FPS, codec=codec, audio=sound, audio_offset=offset)
    assert result.verification.has_audio
    assert abs(click_time(result.path) - flash_time(result.path)) < 1 / FPS
    assert abs(click_time(result.path) - 1.0) < 1 / FPS


def test_a_long_track_is_cut_and_a_short_one_padded_to_the_frames(tmp_path):
    long_tone = write_tone(tmp_path / "long.wav", "0.2*sin(2*PI*440*t)", 5.0)
    short_tone = write_tone(tmp_path / "short.wav", "0.2*sin(2*PI*440*t)", 0.8)
    for sound in (long_tone, short_tone):
        path = finish(flash_frames(), tmp_path / f"clip_{sound.stem}", fps=FPS, audio=sound).path
        samples = decode_audio(path)
        assert abs(len(samples) / 48000 - COUNT / FPS) < 1 / FPS
        assert abs(probe_video(path).duration - COUNT / FPS) < 1 / FPS
    padded = decode_audio(tmp_path / "clip_short.mp4")
    assert np.abs(padded[: int(0.7 * 48000)]).max() > 0.1 and np.abs(padded[int(0.9 * 48000):]).max() < 0.01


def test_audio_follows_interpolated_frames(tmp_path):
    sound = click_file(tmp_path / "click.wav", 1.0)
    result = finish(flash_frames(), tmp_path / "clip", fps=FPS, audio=sound, interpolate=2)
    assert (result.fps, result.frames) == (50, 99)
    assert abs(len(decode_audio(result.path)) / 48000 - 99 / 50) < 1 / 50
    assert abs(click_time(result.path) - 1.0) < 1 / 50


def test_offsets_are_counted_in_samples():
    assert "adelay=delays=24000S:all=1" in audio_filter(0.5, 2.0)
    assert "atrim=start=0.250000" in audio_filter(-0.25, 2.0)
    assert audio_filter(0, 2.0).endswith("apad,atrim=end_sample=96000")


def test_formats_without_sound_and_bad_files_are_input_errors(tmp_path):
    sound = click_file(tmp_path / "click.wav", 0.5)
    with pytest.raises(InputError, match="cannot go into animated GIF"):
        finish(flash_frames(4, 1), tmp_path / "clip", fps=FPS, codec="gif", audio=sound)
    with pytest.raises(InputError, match="no such file"):
        finish(flash_frames(4, 1), tmp_path / "clip", fps=FPS, audio=tmp_path / "missing.wav")
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("la la la")
    with pytest.raises(InputError, match="has no audio stream"):
        finish(flash_frames(4, 1), tmp_path / "clip", fps=FPS, audio=not_audio)
    assert not list(tmp_path.glob("clip*"))
