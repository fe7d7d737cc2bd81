"""Audio- and tempo-driven schedules: a synthetic click track's hits land on the beat frames (±1 frame)."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from framefarm.animation.audio_schedule import (
    beat_frames,
    beats_to_frames,
    envelope,
    make_schedule,
    parse_map,
    schedule_string,
)
from framefarm.animation.keyframes import parse_schedule
from framefarm.errors import InputError
from framefarm.video.audio_decode import decode_pcm

RATE = 44100


def click_track(path: Path, *, bpm: float, seconds: float, rate: int = RATE, first: float = 0.0) -> Path:
    """A 16-bit mono WAV: a 1.5 kHz click with a 4 ms decay on every beat, over faint noise (a real recording's hiss,
    which the onset feature must see through)."""
    t = np.arange(int(rate * seconds)) / rate
    signal = np.random.default_rng(7).normal(0.0, 0.003, t.size)
    burst_t = np.arange(int(0.02 * rate)) / rate
    burst = 0.8 * np.sin(2 * np.pi * 1500 * burst_t) * np.exp(-burst_t / 0.004)
    beat = first
    while beat < seconds:
        start = int(round(beat * rate))
        part = signal[start:start + burst.size]
        part += burst[:part.size]
        beat += 60.0 / bpm
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def peaks(values: np.ndarray) -> list[int]:
    """Local maxima in the upper half of the range (a plateau counts once, at its start)."""
    middle = (values.max() + values.min()) / 2
    found = []
    for i, v in enumerate(values):
        left = values[i - 1] if i else -np.inf
        right = values[i + 1] if i + 1 < values.size else -np.inf
        if v > middle and v > left and v >= right:
            found.append(i)
    return found


def assert_on_beats(found: list[int], beats: np.ndarray, tolerance: int = 1) -> None:
    assert len(found) == len(beats), (found, beats.tolist())
    misses = [(p, b) for p, b in zip(found, beats.tolist()) if abs(p - b) > tolerance]
    assert not misses, f"peaks off the beat frames (peak, beat): {misses}"


@pytest.fixture(scope="module")
def click_120(tmp_path_factory) -> Path:
    return click_track(tmp_path_factory.mktemp("audio") / "click120.wav", bpm=120, seconds=8.0)


@pytest.mark.parametrize("feature", ["loudness", "onset"])
def test_click_track_at_120_bpm_peaks_on_the_beat_frames(click_120, feature):
    pcm = decode_pcm(click_120)  # through the real ffmpeg binary
    fps, frames = 30.0, 240
    made = make_schedule(fps=fps, frames=frames, value_range=(1.0, 1.05), samples=pcm.samples, rate=pcm.rate,
                         feature=feature)
    # Read back the way a job reads it: the schedule string is what feeds the render.
    values = parse_schedule(made.schedule, frames=frames, field="motion.zoom")
    beats = beat_frames(frames, fps=fps, bpm=120)
    assert beats.tolist() == list(range(0, 240, 15))
    assert_on_beats(peaks(values), beats)
    assert values.max() == pytest.approx(1.05) and values.min() >= 1.0 - 1e-9


def test_odd_frames_per_beat_stay_within_a_frame(tmp_path):
    # 128 BPM at 25 fps: 11.72 frames a beat, so beats fall between frames.
    track = click_track(tmp_path / "click128.wav", bpm=128, seconds=6.0, first=0.25)
    pcm = decode_pcm(track)
    frames = 150
    for feature in ("loudness", "onset"):
        made = make_schedule(fps=25, frames=frames, value_range=(0.0, 10.0), samples=pcm.samples, rate=pcm.rate,
                             feature=feature)
        values = parse_schedule(made.schedule, frames=frames, field="motion.angle")
        assert_on_beats(peaks(values), beat_frames(frames, fps=25, bpm=128, offset=0.25))


def test_offset_moves_the_envelope_with_the_track(click_120):
    pcm = decode_pcm(click_120)
    plain = envelope(pcm.samples, pcm.rate, fps=30, frames=120)
    late = envelope(pcm.samples, pcm.rate, fps=30, frames=120, offset=0.5)  # track starts 15 frames in
    assert np.allclose(late[15:], plain[:105], atol=1e-6)
    assert late[:15].max() == 0.0


def test_bpm_pulses_without_a_track_are_beat_locked():
    frames = beats_to_frames(120, 8, 30)
    assert frames == 120
    made = make_schedule(fps=30, frames=frames, value_range=(1.0, 1.04), bpm=120)
    values = parse_schedule(made.schedule, frames=frames, field="motion.zoom")
    assert list(made.beats) == list(range(0, 120, 15))
    assert peaks(values) == list(made.beats)
    assert values[made.beats[3]] == pytest.approx(1.04)
    assert values[made.beats[3] + 10] < 1.005  # decayed within the beat (exp(-(10/15)/0.25) = 0.07)


def test_bpm_with_a_track_accents_follow_the_sound(tmp_path):
    # Clicks only on the first 4 beats: pulses after them stay on the grid but fall to the silence value.
    track = click_track(tmp_path / "short.wav", bpm=120, seconds=1.9)
    pcm = decode_pcm(track)
    made = make_schedule(fps=30, frames=120, value_range=(0.0, 1.0), samples=pcm.samples, rate=pcm.rate, bpm=120)
    values = np.asarray(made.values)
    assert all(values[b] > 0.9 for b in made.beats[:4])
    assert all(values[b] < 0.05 for b in made.beats[4:])


def test_whole_beats_only():
    assert beats_to_frames(128, 32, 25) == 375
    with pytest.raises(InputError, match="187.5 frames") as caught:
        beats_to_frames(128, 16, 25)
    assert "multiple of 32 beats" in str(caught.value)


def test_schedule_strings_are_plain_numbers_and_round_trip():
    rng = np.random.default_rng(3)
    values = np.cumsum(rng.normal(0, 0.01, 300)) + 1.0
    values[50] = 1e-7  # would print as 1e-07: a Deforum *expression*, held instead of interpolated
    text = schedule_string(values, precision=4)
    assert "e-" not in text and "e+" not in text
    back = parse_schedule(text, frames=values.size, field="motion.zoom")
    assert np.max(np.abs(back - np.round(values, 4))) <= 0.5e-4 + 1e-12
    assert text.count(":") < values.size  # collinear keys were left out
    every = schedule_string(values, precision=4, every_frame=True)
    assert every.count(":") == values.size
    assert schedule_string([2.0]) == "0:(2)"
    assert schedule_string([1.0, 1.0, 1.0, 1.0]) == "0:(1), 3:(1)"


def test_map_parsing():
    assert parse_map("1.0:1.05") == (1.0, 1.05)
    assert parse_map("5:-5") == (5.0, -5.0)
    with pytest.raises(InputError, match="--map"):
        parse_map("1.05")


def test_decode_errors_name_the_track(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        decode_pcm(tmp_path / "missing.wav")
    silent_video = tmp_path / "silent.mp4"
    from framefarm.video import write_video_frames

    write_video_frames((np.zeros((32, 32, 3), np.uint8) for _ in range(3)), silent_video, width=32, height=32, fps=10)
    with pytest.raises(InputError, match="no audio stream"):
        decode_pcm(silent_video)


def test_cli_prints_a_schedule_a_job_accepts(click_120, tmp_path):
    run = subprocess.run([sys.executable, "-m", "framefarm", "schedule-from-audio", str(click_120), "--fps", "30",
                          "--param", "zoom", "--map", "1.0:1.05", "--json"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["field"] == "motion.zoom" and document["frames"] == 240
    from framefarm.job import job_from_preset

    job = job_from_preset("zoom-tunnel", ["frames=240", "fps=30", f"motion.zoom={document['schedule']}"])
    assert job.motion.zoom == document["schedule"]
    bad = subprocess.run([sys.executable, "-m", "framefarm", "schedule-from-audio", "--bpm", "120", "--beats", "4",
                          "--param", "strength", "--map", "0:1.5"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "motion.strength" in bad.stderr and "Traceback" not in bad.stderr
