"""Context windows, segments and seams: pure index arithmetic."""

from __future__ import annotations

import pytest

from framefarm.renderers.diffusers.kinds.animatediff.windows import context_windows, owners, segments, window_weights


def test_open_windows_cover_the_clip_and_end_on_its_last_frame():
    windows = context_windows(20, 8, 2, loop=False)
    assert [w[0] for w in windows] == [0, 6, 12]
    assert windows[-1][-1] == 19 and all(len(w) == 8 for w in windows)


def test_loop_windows_wrap_and_shift():
    windows = context_windows(20, 8, 2, loop=True)
    assert windows[-1][:5] == [18, 19, 0, 1, 2] and {f for w in windows for f in w} == set(range(20))
    shifted = context_windows(20, 8, 2, loop=True, shift=3)
    assert shifted[0][0] == 3 and any(19 in w and 0 in w for w in shifted)
    assert context_windows(6, 8, 2, loop=True) == [[0, 1, 2, 3, 4, 5], [3, 4, 5, 0, 1, 2]]


def test_pyramid_weights_peak_in_the_middle():
    assert list(window_weights(5, "pyramid")) == [1, 2, 3, 2, 1]
    with pytest.raises(ValueError, match="unknown window weighting"):
        window_weights(4, "gauss")


def test_segments_overlap_into_the_next_and_wrap_for_loops():
    open_segs = segments(40, 16, 4, loop=False)
    assert [(s.start, s.stop, len(s.frames)) for s in open_segs] == [(0, 16, 20), (16, 32, 20), (32, 40, 8)]
    loop_segs = segments(40, 16, 4, loop=True)
    assert loop_segs[-1].frames[-4:] == (0, 1, 2, 3)
    weights = owners(1, loop_segs)
    assert [s.index for s, _ in weights] == [2, 0] and sum(w for _, w in weights) == pytest.approx(1.0)
    assert owners(10, loop_segs) == [(loop_segs[0], 1.0)]
    assert segments(40, 0, 4, loop=True)[0].frames == tuple(range(40))
