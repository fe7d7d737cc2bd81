"""Clip length from BPM, beats and fps."""

from __future__ import annotations

import pytest

from framefarm.errors import InputError
from framefarm.renderers.diffusers.kinds.animatediff.beats import clip_frames, nearest_beats


def test_whole_clips():
    assert clip_frames(120, 8, 16) == 64
    assert clip_frames(128, 32, 25) == 375


def test_a_clip_that_is_not_whole_suggests_the_nearest_beat_counts():
    assert nearest_beats(128, 25, 16) == [32, 64]
    assert nearest_beats(160, 30, 9) == [8, 12, 4, 16]
    with pytest.raises(InputError, match=r"beats: is 187.5 frames at 128 BPM and 25 fps .*not a whole number.*"
                                         r"Use beats = 32 \(375 frames\)"):
        clip_frames(128, 16, 25)
    with pytest.raises(InputError, match=r"Use beats = 8 \(90 frames\) or 12 \(135 frames\)"):
        clip_frames(160, 9, 30)  # 11.25 frames a beat: multiples of 4 beats work
