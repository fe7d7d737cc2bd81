"""Loops: BPM-exact lengths, crossfade and matched-frame closing, and what finish() does with them."""

from __future__ import annotations

import numpy as np
import pytest

from framefarm.errors import InputError
from framefarm.video.finish import finish
from framefarm.video.loops import (LoopSpec, MatchReport, bpm_frames, check_bpm, crossfade_loop, match_loop,
                                   parse_loop, working_beats)


def numbered(count: int, size: int = 8) -> list[np.ndarray]:
    """Frame i is flat grey level 10·i (mod 250): easy to follow through blends and cuts."""
    return [np.full((size, size, 3), 10 * i % 250, np.uint8) for i in range(count)]


def test_bpm_exact_lengths():
    assert bpm_frames(25, 128, 32) == 375
    assert bpm_frames(30, 120, 4) == 60
    assert working_beats(25, 128) == [32, 64, 96, 128]
    assert working_beats(30, 120) == [4, 8, 12, 16]


def test_a_fractional_beat_length_names_the_beat_counts_that_work():
    with pytest.raises(InputError, match=r"187\.5 frames at 25 fps and 128 BPM.*Use beats = 32 or 64 or 96 "
                                         r"\(375, 750, 1125 frames\)"):
        bpm_frames(25, 128, 16)
    with pytest.raises(InputError, match="not a whole number"):
        bpm_frames(29.97, 120, 8)


def test_check_bpm_derives_or_checks_the_beats():
    assert check_bpm(375, 25, 128, None) == 32
    assert check_bpm(120, 60, 120, 4) == 4
    with pytest.raises(InputError, match="a 4-beat loop at 120 BPM and 30 fps is 60 frames"):
        check_bpm(59, 30, 120, 4)
    with pytest.raises(InputError, match="Use 375, 750, 1125 frames"):
        check_bpm(200, 25, 128, None)


def test_parse_loop():
    assert parse_loop(None) is None and parse_loop("none") is None
    assert parse_loop("wrap") == LoopSpec("none", 0)
    assert parse_loop("crossfade:6") == LoopSpec("crossfade", 6)
    assert parse_loop("match") == LoopSpec("match", 0) and LoopSpec("match").length == 24
    with pytest.raises(InputError, match="is not a loop setting"):
        parse_loop("pingpong")


def test_crossfade_dissolves_the_tail_into_the_head_and_streams():
    out = list(crossfade_loop(iter(numbered(12)), 3))
    levels = [int(frame[0, 0, 0]) for frame in out]
    # frames 3..8 as they were, then tail 9,10,11 fading into head 0,1,2 (head weights 1/4, 2/4, 3/4)
    assert levels == [30, 40, 50, 60, 70, 80, 68, 55, 42]
    assert len(out) == 12 - 3
    with pytest.raises(InputError, match="needs at least 8 frames"):
        list(crossfade_loop(iter(numbered(5)), 4))


def test_match_cuts_before_the_tail_frame_closest_to_frame_0():
    # The motion comes back to its start at frame 9 (level 5 ≈ frame 0's 0), then drifts on.
    levels = [0, 20, 40, 60, 80, 100, 70, 40, 15, 5, 30, 60]
    frames = [np.full((8, 8, 3), level, np.uint8) for level in levels]
    report = MatchReport()
    out = list(match_loop(iter(frames), 6, report))
    assert [int(f[0, 0, 0]) for f in out] == levels[:9]
    assert (report.cut, report.dropped) == (9, 3)


def test_finish_names_a_bpm_loop_and_interpolates_its_wrap_pair(tmp_path):
    # 8 frames at 4 fps, loop: 2x interpolation gives 16 frames at 8 fps = 2 s = 4 beats at 120 BPM.
    result = finish(numbered(8, 16), tmp_path, fps=4, codec="png", loop="wrap", interpolate=2, bpm=120, name="vj")
    assert (result.frames, result.fps, result.beats) == (16, 8, 4)
    assert result.path.name == "vj_16x16_8fps_16f_120bpm_4beats"
    last = np.asarray(__import__("cv2").imread(str(sorted(result.path.glob("*.png"))[-1])))
    assert abs(int(last[0, 0, 0]) - 35) <= 1  # halfway from frame 7 (70) back to frame 0 (0)


def test_a_loop_that_is_not_whole_beats_fails_before_encoding(tmp_path):
    with pytest.raises(InputError, match="beats at 120 BPM"):
        finish(numbered(9, 16), tmp_path, fps=4, codec="h264", loop="wrap", bpm=120, name="vj")
    assert list(tmp_path.iterdir()) == []


def test_crossfade_loop_through_finish_shortens_the_clip_and_checks_the_beats(tmp_path):
    # 30 fps, 120 BPM: 15 frames a beat. 68 rendered frames - 8 crossfaded = 60 = 4 beats.
    result = finish(numbered(68, 16), tmp_path, fps=30, codec="hapq", loop="crossfade:8", bpm=120, beats=4,
                    name="vj")
    assert (result.frames, result.beats) == (60, 4)
    assert result.path.name == "vj_16x16_30fps_60f_120bpm_4beats_hapq.mov"


def test_match_loop_through_finish_is_named_after_its_real_length(tmp_path):
    levels = [0, 30, 60, 90, 120, 150, 120, 90, 60, 30, 2, 40]
    frames = [np.full((16, 16, 3), level, np.uint8) for level in levels]
    result = finish(frames, tmp_path, fps=25, loop="match:5", name="m")
    assert result.frames == 10 and result.path.name == "m_16x16_25fps_10f.mp4"
    assert any("loop closed at source frame 10" in note for note in result.notes)
