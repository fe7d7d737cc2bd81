"""Interpolation: a moving square lands within 1 px of its true midpoint; loops interpolate their wrap pair."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framefarm.errors import InputError
from framefarm.video.interpolate import (InterpolateSpec, flow_interpolate, interpolated_count, minterpolate,
                                         rife_interpolate)

H, W, SIDE = 96, 128, 20
_rng = np.random.default_rng(7)
BACKGROUND = np.repeat((40 + 20 * np.sin(np.arange(W) / 9)[None, :]
                        + 15 * np.cos(np.arange(H) / 7)[:, None]).astype(np.float32)[..., None], 3, axis=2)
TEXTURE = cv2.GaussianBlur(_rng.integers(150, 255, (SIDE, SIDE, 3)).astype(np.float32), (3, 3), 0)


def square_at(x: int, y: int) -> np.ndarray:
    """A textured bright square with its top-left corner at (x, y) over a smooth dark background."""
    frame = BACKGROUND.copy()
    frame[y:y + SIDE, x:x + SIDE] = TEXTURE
    return np.clip(frame, 0, 255).astype(np.uint8)


def square_position(frame: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Centre of the square (pixels brighter than the midpoint between background and square), and its mask."""
    mask = frame.astype(np.float32).mean(axis=2) > 120
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean()), mask


def assert_square_at(frame: np.ndarray, x: float, y: float) -> None:
    cx, cy, mask = square_position(frame)
    true_cx, true_cy = x + (SIDE - 1) / 2, y + (SIDE - 1) / 2
    assert abs(cx - true_cx) <= 1 and abs(cy - true_cy) <= 1, (cx, cy, true_cx, true_cy)
    truth = np.zeros_like(mask)
    truth[round(y):round(y) + SIDE, round(x):round(x) + SIDE] = True
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9, iou  # a solid square where it belongs, not two ghosts


PATH = [(10, 20), (20, 24), (30, 28), (40, 32), (52, 30), (64, 26)]  # steps of 10–12 px, changing direction


def test_flow_interpolation_puts_the_square_within_1px_of_its_midpoint():
    frames = [square_at(*p) for p in PATH]
    out = list(flow_interpolate(frames, 2))
    assert len(out) == interpolated_count(len(PATH), 2, loop=False) == 11
    for i, ((x0, y0), (x1, y1)) in enumerate(zip(PATH, PATH[1:])):
        assert np.array_equal(out[2 * i], frames[i])  # rendered frames pass through untouched
        assert_square_at(out[2 * i + 1], (x0 + x1) / 2, (y0 + y1) / 2)


def test_a_plain_crossfade_would_fail_the_same_check():
    a, b = square_at(*PATH[0]), square_at(*PATH[1])
    blend = cv2.addWeighted(a, 0.5, b, 0.5, 0)
    with pytest.raises(AssertionError):
        assert_square_at(blend, 15, 22)


def test_thirds_at_factor_3():
    out = list(flow_interpolate([square_at(10, 20), square_at(25, 29)], 3))
    assert len(out) == 4
    assert_square_at(out[1], 15, 23)
    assert_square_at(out[2], 20, 26)


LOOP = [(20, 20), (32, 20), (44, 20), (44, 32), (44, 44), (32, 44), (20, 44), (20, 32)]  # around a square path


@pytest.mark.parametrize("method", ["flow", "minterpolate"])
def test_loops_interpolate_the_wrap_pair_and_do_not_repeat_frame_0(method):
    frames = [square_at(*p) for p in LOOP]
    if method == "flow":
        out = list(flow_interpolate(frames, 2, loop=True))
    else:
        out = list(minterpolate(frames, 2, loop=True, fps=25))
    assert len(out) == interpolated_count(len(LOOP), 2, loop=True) == 16
    (x_last, y_last), (x_first, y_first) = LOOP[-1], LOOP[0]
    assert_square_at(out[-1], (x_last + x_first) / 2, (y_last + y_first) / 2)  # the wrap in-between
    assert_square_at(out[-2], x_last, y_last)
    if method == "flow":
        assert not np.array_equal(out[-1], frames[0])


def test_minterpolate_gives_exactly_the_planned_count_for_clips():
    out = list(minterpolate([square_at(*p) for p in PATH], 2, fps=25))
    assert len(out) == 11
    assert_square_at(out[5], (PATH[2][0] + PATH[3][0]) / 2, (PATH[2][1] + PATH[3][1]) / 2)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_rife_runs_a_user_supplied_torchscript_model(tmp_path):
    torch = pytest.importorskip("torch")

    class Blend(torch.nn.Module):  # stands in for RIFE: same call signature, (img0, img1, timestep)
        def forward(self, img0, img1, timestep):
            return img0 * (1 - timestep) + img1 * timestep

    path = tmp_path / "rife.pt"
    torch.jit.save(torch.jit.script(Blend()), str(path))
    a, b = np.zeros((40, 50, 3), np.uint8), np.full((40, 50, 3), 200, np.uint8)  # 40x50: padded to 64x64 inside
    out = list(rife_interpolate([a, b], 4, model=path, loop=True))
    assert len(out) == 8
    assert [int(f[0, 0, 0]) for f in out] == [0, 50, 100, 150, 200, 150, 100, 50]


def test_interpolation_settings_are_checked(tmp_path):
    with pytest.raises(InputError, match="RIFE needs its weights"):
        InterpolateSpec(2, "rife")
    with pytest.raises(InputError, match="no such file"):
        InterpolateSpec(2, "rife", tmp_path / "missing.pt")
    with pytest.raises(InputError, match="not an interpolation method"):
        InterpolateSpec(2, "magic")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="whole factor from 1 to 16"):
        InterpolateSpec(0)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torchscript")
    with pytest.raises(InputError, match="is not a TorchScript module"):
        list(rife_interpolate([np.zeros((8, 8, 3), np.uint8)] * 2, 2, model=bad))
