"""Tests for framefarm.animation.keyframes: Deforum schedule strings, checked against hand-computed Deforum output."""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from framefarm.animation.keyframes import (
    INTERPOLATORS,
    evaluate_schedules,
    interp_cubic,
    interp_linear,
    interp_quadratic,
    parse_schedule,
    parse_string_schedule,
)
from framefarm.animation.safe_math import compile_expression
from framefarm.errors import InputError


def sched(text, frames=10, **kwargs):
    return parse_schedule(text, frames=frames, field="motion.zoom", **kwargs)


class TestDeforumSemantics:
    def test_worked_example_from_the_design_doc(self):
        # 0:(1+t*0.01), 5:(2), 8:(cos(t)*2): the expression runs until the plain number at 5, frames 6-7 are a
        # straight line from 2 to cos(8)*2, and cos(t)*2 holds from frame 8 on.
        got = sched("0:(1+t*0.01), 5:(2), 8:(cos(t)*2)", frames=12)
        end = math.cos(8) * 2
        want = [1.00, 1.01, 1.02, 1.03, 1.04, 2.0, 2 + (end - 2) / 3, 2 + 2 * (end - 2) / 3]
        want += [math.cos(t) * 2 for t in range(8, 12)]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
        assert got.dtype == np.float64 and got.shape == (12,)

    def test_linear_between_plain_numbers_and_hold_after_the_last(self):
        np.testing.assert_allclose(sched("0:(0), 4:(1), 6:(-1)", frames=9),
                                   [0, 0.25, 0.5, 0.75, 1, 0, -1, -1, -1])

    def test_parentheses_are_optional(self):
        np.testing.assert_array_equal(sched("0:1, 5:3", frames=6), sched("0:(1), 5:(3)", frames=6))
        np.testing.assert_allclose(sched("0:1, 5:3", frames=6), [1, 1.4, 1.8, 2.2, 2.6, 3])

    def test_frame_zero_takes_the_first_known_value(self):
        # Deforum crashes without a key at 0; framefarm leaves those frames open, so they take the first value.
        np.testing.assert_allclose(sched("3:(5), 6:(8)", frames=8), [5, 5, 5, 5, 6, 7, 8, 8])
        np.testing.assert_allclose(sched("3:(t)", frames=6), [3, 3, 3, 3, 4, 5])

    def test_expression_holds_until_the_next_plain_number(self):
        np.testing.assert_allclose(sched("0:(t*10), 3:(t), 6:(0)", frames=8), [0, 10, 20, 3, 4, 5, 0, 0])

    def test_expression_after_plain_number(self):
        np.testing.assert_allclose(sched("0:(0), 4:(t)", frames=7), [0, 1, 2, 3, 4, 5, 6])

    @pytest.mark.parametrize("value", ["7", "(7)", "+7", "((7))", "(+7)", "7.0", "'7'", '("7")'])
    def test_plain_numbers_interpolate(self, value):
        np.testing.assert_allclose(sched(f"0:{value}, 4:(8)", frames=5), [7, 7.25, 7.5, 7.75, 8])

    @pytest.mark.parametrize("value", ["7e0", "7.", "( 7 )", "(7 )", "7+0", "(7*1)"])
    def test_non_plain_numbers_are_expressions_and_hold(self, value):
        # Deforum's plain-number test fails on exponents, a trailing dot and inner spaces: the value is then an
        # expression, which holds until the next plain-number key instead of interpolating.
        np.testing.assert_allclose(sched(f"0:{value}, 4:(8)", frames=5), [7, 7, 7, 7, 8])

    def test_small_plain_numbers(self):
        np.testing.assert_allclose(sched("0:.5, 2:-1.5", frames=3), [0.5, -0.5, -1.5])
        np.testing.assert_allclose(sched("0:(-(1)), 2:(1)", frames=3), [-1, 0, 1])

    def test_seed_variable(self):
        np.testing.assert_array_equal(sched("0:(s*2)", frames=3, seed=21), [42, 42, 42])
        np.testing.assert_array_equal(sched("0:(s)", frames=2), [-1, -1])  # the default seed is -1, as in Deforum

    def test_max_f_in_values(self):
        np.testing.assert_allclose(sched("0:(t/max_f)", frames=5), [0, 0.25, 0.5, 0.75, 1])

    def test_bare_number_is_a_constant_schedule(self):
        np.testing.assert_array_equal(sched("1.0", frames=4), [1.0] * 4)
        np.testing.assert_array_equal(sched(" -2.5e-1 ", frames=2), [-0.25, -0.25])
        np.testing.assert_array_equal(parse_schedule(0.5, frames=2, field="f"), [0.5, 0.5])

    def test_whitespace_and_newlines(self):
        text = "0: (0),\n  5 : (5) ,\n\t10:(\n  10\n)"
        np.testing.assert_allclose(sched(text, frames=11), np.arange(11))

    def test_comma_inside_function_arguments_is_fine(self):
        np.testing.assert_array_equal(sched("0:(where(t>2, 1, 0)), 4:(max(t, 5))", frames=7), [0, 0, 0, 1, 5, 5, 6])

    def test_returns_a_fresh_array_each_call(self):
        first = sched("0:(1)", frames=3)
        first[:] = 9
        np.testing.assert_array_equal(sched("0:(1)", frames=3), [1, 1, 1])

    def test_single_frame_job(self):
        np.testing.assert_array_equal(sched("0:(3), 5:(9)", frames=1), [3])


class TestKeys:
    def test_max_f_keys_bare_and_quoted(self):
        for key in ("max_f", '"max_f"', "'max_f'"):
            np.testing.assert_allclose(sched(f"0:(0), {key}:(4)", frames=5), [0, 1, 2, 3, 4])

    def test_quoted_expression_keys_of_the_default_seed_schedule(self):
        # max_f-1 is the second-to-last frame; its expression (s) then holds through the last frame.
        got = sched('0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)', frames=6, seed=7)
        np.testing.assert_array_equal(got, [7, -1, -1, -1, 7, 7])

    def test_expression_keys_truncate_like_int(self):
        # max_f/2 at 120 frames is 59.5: Deforum's int() makes it 59.
        got = parse_schedule("0:(0), 'max_f/2':(59)", frames=120, field="f")
        assert got[59] == 59 and got[58] == 58 and got[60] == 59
        # int() truncates toward zero: max_f/2-5 at 10 frames is -0.5, i.e. frame 0 (later pair wins there).
        np.testing.assert_array_equal(sched("0:(3), 'max_f/2-5':(1)", frames=10), [1] * 10)

    def test_keys_outside_the_job_are_dropped_not_tween_targets(self):
        np.testing.assert_array_equal(sched("0:(0), 200:(100)", frames=10), [0] * 10)
        np.testing.assert_array_equal(sched("-5:(100), 0:(1)", frames=3), [1, 1, 1])
        np.testing.assert_array_equal(sched("0:(1), 'max_f+1':(100)", frames=3), [1, 1, 1])

    def test_duplicate_keys_last_wins(self):
        np.testing.assert_array_equal(sched("0:(1), 0:(2)", frames=2), [2, 2])
        np.testing.assert_allclose(sched("0:(0), 4:(100), max_f:(4)", frames=5), [0, 1, 2, 3, 4])

    def test_keys_in_any_order(self):
        np.testing.assert_array_equal(sched("4:(4), 0:(0)", frames=5), sched("0:(0), 4:(4)", frames=5))

    def test_integer_valued_decimal_key(self):
        np.testing.assert_allclose(sched("0:(0), 2.0:(2)", frames=3), [0, 1, 2])


class TestInterpolation:
    def test_quadratic_through_three_keys_is_the_parabola(self):
        got = sched("0:(0), 5:(25), 10:(100)", frames=11, interpolation="quadratic")
        np.testing.assert_allclose(got, np.arange(11) ** 2, atol=1e-12)

    def test_cubic_through_four_keys_is_the_cubic(self):
        got = sched("0:(0), 2:(8), 4:(64), 6:(216)", frames=7, interpolation="cubic")
        np.testing.assert_allclose(got, np.arange(7) ** 3, atol=1e-12)

    def test_cubic_falls_back_to_quadratic_with_three_keys_and_to_linear_with_two(self):
        three = "0:(0), 5:(25), 10:(100)"
        np.testing.assert_array_equal(sched(three, frames=11, interpolation="cubic"),
                                      sched(three, frames=11, interpolation="quadratic"))
        two = "0:(0), 10:(100)"
        for method in ("cubic", "quadratic"):
            np.testing.assert_allclose(sched(two, frames=11, interpolation=method), np.arange(11) * 10)

    def test_out_of_range_keys_do_not_count_for_the_fallback(self):
        # Three keys inside the job (plus one beyond it): quadratic, not cubic.
        text = "0:(0), 5:(25), 10:(100), 500:(7)"
        np.testing.assert_allclose(sched(text, frames=11, interpolation="cubic"), np.arange(11) ** 2, atol=1e-12)

    def test_cubic_hand_computed_not_a_knot(self):
        # (0,0) (2,1) (4,0) (6,1) (8,0): not-a-knot leaves one interior knot, at 4, and the data are symmetric about
        # it, so on [0, 4] the spline is the cubic with p(0)=0, p(2)=1, p(4)=0, p'(4)=0. With u = x-4 that is
        # u**3/8 + u**2/2, so p(1) = -27/8 + 9/2 = 1.125 and p(3) = -1/8 + 1/2 = 0.375; mirrored at 5 and 7.
        got = sched("0:0, 2:1, 4:0, 6:1, 8:0", frames=9, interpolation="cubic")
        np.testing.assert_allclose(got[[1, 3, 5, 7]], [1.125, 0.375, 0.375, 1.125], atol=1e-12)

    def test_quadratic_hand_computed(self):
        # (0,0) (2,4) (4,0) (6,4): SciPy's k=2 knots are the midpoints less the first and last, i.e. one knot at 3.
        # By the symmetry (x → 6-x, y → 4-y) the value at the knot is 2; piece [0, 3] is the parabola through
        # (0,0) (2,4) (3,2): y = -4/3 x**2 + 14/3 x, so y(1) = 10/3; y(5) = 4 - y(1) = 2/3.
        got = sched("0:0, 2:4, 4:0, 6:4", frames=7, interpolation="quadratic")
        np.testing.assert_allclose(got[[1, 3, 5]], [10 / 3, 2, 2 / 3], atol=1e-12)

    @pytest.mark.parametrize(
        ("method", "want"),
        [
            ("quadratic", [0.0, 0.565747563874, 0.612787566561, 0.14112000806, -0.756802495308, -0.958924274663, 2.0,
                           2.49982762746, 0.172816872948, -1.0, -0.355117614125, 1.73104792678, 3.0, 3.25, 3.5, 3.75]),
            ("cubic", [0.0, 0.588866123278, 0.61279117011, 0.14112000806, -0.756802495308, -0.958924274663, 2.0,
                       2.39528403739, 0.546219165802, -1.0, -0.386933026166, 1.47884379743, 3.0, 3.25, 3.5, 3.75]),
        ],
    )
    def test_pinned_against_pandas_scipy_pipeline(self, method, want):
        # Values from the pandas/SciPy route Deforum takes (Series.interpolate → interp1d), computed once with SciPy
        # 1.17 and pinned, so the check runs without SciPy. Expression frames 3-5 and 12-15 are spline data points.
        got = sched("0:(0), 3:(sin(t)), 6:(2), 9:(-1), 12:(t/4)", frames=16, interpolation=method)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-11)

    def test_unknown_interpolation(self):
        with pytest.raises(InputError, match=r"motion\.zoom\.interpolation: is not a known interpolation.*linear"):
            sched("0:(1)", interpolation="spline")  # type: ignore[arg-type]

    def test_interpolators_table(self):
        assert dict(INTERPOLATORS) == {"linear": interp_linear, "quadratic": interp_quadratic, "cubic": interp_cubic}
        x, y, at = np.array([0.0, 3, 4, 9]), np.array([1.0, -2, 5, 0]), np.array([1.0, 2, 5, 8])
        for name, fn in INTERPOLATORS.items():
            out = fn(x, y, at)
            assert out.shape == (4,) and np.all(np.isfinite(out)), name
            np.testing.assert_allclose(fn(x, y, x), y, atol=1e-12)  # every interpolator passes through its points

    def test_matches_scipy_splines(self):
        scipy_interpolate = pytest.importorskip("scipy.interpolate")
        rng = np.random.default_rng(5)
        for _ in range(200):
            n = int(rng.integers(4, 30))
            x = np.sort(rng.choice(300, size=n, replace=False)).astype(float)
            y = rng.normal(size=n) * 10
            at = np.arange(x[0], x[-1] + 1)
            for k, fn in ((2, interp_quadratic), (3, interp_cubic)):
                want = scipy_interpolate.make_interp_spline(x, y, k=k)(at)
                np.testing.assert_allclose(fn(x, y, at), want, rtol=1e-9, atol=1e-9)


def _deforum_reference(text: str, frames: int, method: str, seed: int) -> np.ndarray:
    """A naive frame-by-frame model of Deforum's get_inbetweens, written from the design doc, as a test oracle."""
    pairs = {}
    for piece in re.split(r",(?![^()]*\))", text):
        key, value = piece.split(":", 1)
        pairs[int(key)] = value.strip()
    pairs = {k: v for k, v in pairs.items() if 0 <= k < frames}
    series = [math.nan] * frames
    current, is_number = None, False
    for i in range(frames):
        if i in pairs:
            current = pairs[i]
            is_number = bool(re.fullmatch(r"[+-]?(\d+(\.\d+)?|\.\d+)", current.replace("(", "").replace(")", "")))
            if is_number:
                series[i] = float(current.replace("(", "").replace(")", ""))
        if current is not None and not is_number:
            series[i] = compile_expression(current, field="ref").evaluate(t=i, max_f=frames - 1, s=seed)
    valid = [i for i, v in enumerate(series) if not math.isnan(v)]
    series[0], series[-1] = series[valid[0]], series[valid[-1]]
    if method == "cubic" and len(pairs) <= 3:
        method = "quadratic"
    if method == "quadratic" and len(pairs) <= 2:
        method = "linear"
    x = np.array([i for i, v in enumerate(series) if not math.isnan(v)], dtype=float)
    y = np.array([series[int(i)] for i in x])
    if method == "linear":
        return np.interp(np.arange(frames), x, y)
    scipy_interpolate = pytest.importorskip("scipy.interpolate")
    return scipy_interpolate.interp1d(x, y, kind=method)(np.arange(frames))


@pytest.mark.parametrize("method", ["linear", "quadratic", "cubic"])
def test_random_schedules_match_the_frame_by_frame_reference(method):
    rng = np.random.default_rng({"linear": 1, "quadratic": 2, "cubic": 3}[method])
    values = ["(1)", "(-2.5)", "(.5)", "(t*0.1)", "(sin(t/7)*3)", "(1e-2)", "(where(t>20, 2, -2))", "(s/100)", "(4.)"]
    for _ in range(60):
        frames = int(rng.integers(2, 80))
        keys = sorted(set(rng.integers(0, frames + 10, size=int(rng.integers(1, 8))).tolist()))
        if keys[0] >= frames:
            keys[0] = 0
        text = ", ".join(f"{k}:{values[int(rng.integers(len(values)))]}" for k in keys)
        got = parse_schedule(text, frames=frames, field="f", seed=123, interpolation=method)
        np.testing.assert_allclose(got, _deforum_reference(text, frames, method, 123), rtol=1e-9, atol=1e-9,
                                   err_msg=text)


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("", "is empty"),
            ("   \n", "is empty"),
            ("0:(1", r"unbalanced parentheses: the '\(' at character 2 is never closed"),
            ("0:(1)), 5:(2)", r"unbalanced parentheses: the '\)' at character 5 closes nothing"),
            ("0: 0: (sin(t))", r"pair 1 has more than one ':' \(like '0: 0: \(expr\)'\).*Write one key per value"),
            ("0:(1), 5:2,3", r"pair 3 has no ':' between frame and value \(a comma splitting a value\?\)"),
            ("0:(1),", r"has an empty pair 2 \(a stray comma\?\)"),
            ("0:(1),,5:(2)", "has an empty pair 2"),
            ("0:", "pair 1 has no value after ':'"),
            (":(1)", "has no frame number before ':'"),
            ("sin(t)", r"has no 'frame:' key before its value.*Write 0:\(sin\(t\)\)"),
            ("1.5:(2)", r"has the fractional key 1\.5; keys are whole frame numbers"),
            ("t:(2)", "has a key that uses the name 't'"),
            ("'max_f:(2)", "unterminated ' quote"),
            ("\"max_f':(2)", "unterminated|unmatched quotes"),
            ("0:('sin(t)')", "quotes are allowed only around keys and plain numbers"),
            ("0:(__import__(os))", "has a value that calls '__import__'"),
            ("0:(__import__('os'))", "quotes are allowed only around keys and plain numbers"),
            ("0:(().__class__)", "has a value that contains attribute access"),
            ("0:(t.real)", "has a value that contains attribute access"),
            ("0:(9**9**9)", "has a value that raises to the power"),
            ("0:(1e999)", "too large for a 64-bit float"),
            ("200:(1)", r"has no key inside frames 0 … 9, so no frame gets a value.*Add a key at frame 0"),
            ("0:(1), 5:(1/(t-6))", r"the value evaluates to inf at frame t=6.*got '5:\(1/\(t-6\)\)'"),
            ("0:(0), 'max_f/0':(1)", "evaluates to"),
        ],
    )
    def test_error_names_field_and_problem(self, text, problem):
        with pytest.raises(InputError, match=problem) as caught:
            parse_schedule(text, frames=10, field="motion.zoom")
        assert caught.value.field == "motion.zoom"

    def test_file_03_double_colon_is_refused_not_read_as_zero(self):
        text = "0: 0: ((0.11 * cos((120/ 240 * 3.141 * (t + 0) / 24))**1 + 0))"
        with pytest.raises(InputError, match=r"rotation_3d_x: pair 1 has more than one ':'"):
            parse_schedule(text, frames=16, field="rotation_3d_x")

    @pytest.mark.parametrize("frames", [0, -1, 2.5, True, "10"])
    def test_bad_frame_count(self, frames):
        with pytest.raises(InputError, match="frames: must be a whole number of frames ≥ 1"):
            parse_schedule("0:(1)", frames=frames, field="f")

    def test_not_text(self):
        with pytest.raises(InputError, match="must be a schedule string"):
            parse_schedule(["0:(1)"], frames=2, field="f")  # type: ignore[arg-type]
        with pytest.raises(InputError, match="must be a finite number"):
            parse_schedule(float("nan"), frames=2, field="f")


class TestStringSchedules:
    def test_hold_until_next_key(self):
        got = parse_string_schedule('0: ("Euler a"), 3: ("DPM++ 2M Karras")', frames=5, field="sampler")
        assert got == ["Euler a"] * 3 + ["DPM++ 2M Karras"] * 2

    def test_colons_commas_and_parentheses_inside_quotes_are_kept(self):
        text = "0: (\"C:/models/a.ckpt\"), 2: ('model (v2), final.safetensors'), 'max_f': (\"{video_mask}\")"
        got = parse_string_schedule(text, frames=4, field="checkpoint")
        assert got == ["C:/models/a.ckpt"] * 2 + ["model (v2), final.safetensors", "{video_mask}"]

    def test_unquoted_and_before_first_key(self):
        assert parse_string_schedule("2: (Euler a), 3: DDIM", frames=4, field="s") == ["Euler a"] * 3 + ["DDIM"]

    def test_keys_beyond_the_job_are_dropped(self):
        text = '0: ("model1.ckpt"), 100: ("model2.safetensors")'  # Deforum's default checkpoint_schedule
        assert parse_string_schedule(text, frames=3, field="s") == ["model1.ckpt"] * 3

    def test_empty_string_value(self):
        assert parse_string_schedule('0: ("")', frames=2, field="s") == ["", ""]

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ('0: ("Euler a)', "unterminated \" quote"),
            ('0: 0: ("Euler a")', "more than one ':'"),
            ("Euler a", "has no 'frame:' key"),
            ('0: ("a"b)', "stray quotes or parentheses"),
            ('50: ("a")', "has no key inside frames 0 … 9"),
            ("", "is empty"),
        ],
    )
    def test_errors(self, text, problem):
        with pytest.raises(InputError, match=problem) as caught:
            parse_string_schedule(text, frames=10, field="sampler_schedule")
        assert caught.value.field == "sampler_schedule"


TYPICAL_SCHEDULES = {
    "angle": "0:(0)",
    "zoom": "0:(1.0025+0.002*sin(1.25*3.14*t/30))",
    "translation_x": "0:(0), 30:(10*sin(2*3.14*t/60)), 500:(0), 900:(3)",
    "translation_y": "0:(0), 100:(-5), 50000:(5), max_f:(0)",
    "translation_z": "0:(1.75)",
    "rotation_3d_y": "0:(0.5*cos(t/40))",
    "rotation_3d_x": "0:((0.11 * cos((120/ 240 * 3.141 * (t + 0) / 24))**1 + 0)"
                     "*(1 * cos((120 / 1920 * 3.141 * (t + 0) / 12 ))**1 + 1))",
    "strength_schedule": "0:(0.65), 25:(0.55), 'max_f/2':(0.4), max_f:(0.65)",
    "noise_schedule": "0:(0.065)",
    "cfg_scale_schedule": "0:(7)",
    "steps_schedule": "0:(25)",
    "contrast_schedule": "0:(1.0)",
    "fov_schedule": "0:(70)",
    "near_schedule": "0:(200)",
    "far_schedule": "0:(10000)",
    "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
    "transform_center_x": "0:(0.5)",
    "transform_center_y": "0:(0.5+0.1*where(t%240<120, 1, -1))",
    "subseed_strength_schedule": "0:((0.20 * cos((120 / 120 * 3.141 * (t + 0) / 24))**1 + 0.55))",
    "kernel_schedule": "0: (5), 1000: (3), 2000: (5)",
}


class TestEvaluateSchedules:
    def test_returns_every_schedule(self):
        got = evaluate_schedules({"a": "0:(1)", "b": "0:(t)"}, frames=3, seed=5)
        assert set(got) == {"a", "b"}
        np.testing.assert_array_equal(got["b"], [0, 1, 2])

    def test_mapping_key_is_the_field_in_errors(self):
        with pytest.raises(InputError, match=r"^motion\.angle: .*unbalanced"):
            evaluate_schedules({"motion.zoom": "0:(1)", "motion.angle": "0:(1"}, frames=3)

    def test_twenty_schedules_of_a_100k_frame_job_well_under_a_second(self):
        evaluate_schedules(TYPICAL_SCHEDULES, frames=1000, seed=42)  # warm the parse cache, as a second job would
        # CPU time of this process, not wall time: the bound guards against super-linear work, and other
        # processes on a loaded test box must not trip it.
        started = time.process_time()
        got = evaluate_schedules(TYPICAL_SCHEDULES, frames=100_000, seed=42)
        elapsed = time.process_time() - started
        assert len(got) == 20 and all(v.shape == (100_000,) for v in got.values())
        assert elapsed < 1.0, f"{elapsed:.3f} s"
        assert got["seed_schedule"][0] == 42 and got["seed_schedule"][50_000] == -1
        assert got["strength_schedule"][49_999] == pytest.approx(0.4)


# ----- Real Deforum settings files --------------------------------------------------------------------------------

def _samples_dir() -> Path | None:
    env = os.environ.get("FRAMEFARM_DEFORUM_SAMPLES")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    # /work/main/tests/animation/ → /work/shared/data/deforum-settings (shared/ sits beside the repo), or inside it.
    candidates += [parent / "shared" / "data" / "deforum-settings" for parent in here.parents]
    return next((c for c in candidates if c.is_dir() and any(c.glob("*.txt"))), None)


SAMPLES = _samples_dir()
SAMPLE_FILES = sorted(SAMPLES.glob("*.txt")) if SAMPLES else []
STRING_SCHEDULES = {"sampler_schedule", "scheduler_schedule", "checkpoint_schedule", "mask_schedule",
                    "noise_mask_schedule"}
MOTION = {"angle", "zoom", "translation_x", "translation_y", "translation_z", "transform_center_x",
          "transform_center_y", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "perspective_flip_theta",
          "perspective_flip_phi", "perspective_flip_gamma", "perspective_flip_fv", "blendFactorMax",
          "blendFactorSlope", "color_correction_factor"}
# The one malformed schedule among the samples (documented in SOURCES.md): Deforum reads it as constant 0.
KNOWN_BAD = {("03_", "rotation_3d_x")}


CONTROLNET = re.compile(r"cn_\d+_(weight|guidance_start|guidance_end)")


def _numeric_schedules(settings: dict) -> dict[str, str]:
    return {
        k: v for k, v in settings.items()
        if isinstance(v, str) and k not in STRING_SCHEDULES
        and (k.endswith("_schedule") or k in MOTION or CONTROLNET.fullmatch(k))
    }


@pytest.mark.skipif(not SAMPLE_FILES, reason="Deforum sample settings not found (set FRAMEFARM_DEFORUM_SAMPLES)")
@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name[:2])
def test_every_schedule_of_real_settings_files(path):
    settings = json.loads(path.read_text(encoding="utf-8"))
    frames, seed = int(settings["max_frames"]), settings["seed"] if settings["seed"] != -1 else 1234
    schedules = _numeric_schedules(settings)
    assert len(schedules) >= 50
    for name, text in schedules.items():
        if (path.name[:3], name) in KNOWN_BAD:
            with pytest.raises(InputError, match=f"{name}: pair 1 has more than one ':'"):
                parse_schedule(text, frames=frames, field=name, seed=seed)
            continue
        for method in ("linear", "cubic"):
            values = parse_schedule(text, frames=frames, field=name, seed=seed, interpolation=method)
            assert values.shape == (frames,) and np.all(np.isfinite(values)), name
    for name in STRING_SCHEDULES & settings.keys():
        strings = parse_string_schedule(settings[name], frames=frames, field=name)
        assert len(strings) == frames and all(isinstance(s, str) for s in strings)
    if "checkpoint_schedule" in settings:
        assert parse_string_schedule(settings["checkpoint_schedule"], frames=frames, field="c")[0] == "model1.ckpt"
    # Values a Deforum user would recognise.
    assert parse_schedule(settings["zoom"], frames=frames, field="zoom", seed=seed)[0] == pytest.approx(
        {"01": 1.0025, "02": 1.0025, "03": 0.0, "04": 1.0025}[path.name[:2]])


@pytest.mark.skipif(not SAMPLE_FILES, reason="Deforum sample settings not found (set FRAMEFARM_DEFORUM_SAMPLES)")
def test_camera_pilot_export_with_6001_keys_is_fast_and_exact():
    path = next((p for p in SAMPLE_FILES if p.name.startswith("04_")), None)
    if path is None:
        pytest.skip("file 04 not present")
    settings = json.loads(path.read_text(encoding="utf-8"))
    text = settings["translation_x"]
    assert text.count(":") == 6001
    # CPU time of this process, not wall time: the bound guards against super-linear work, and other
    # processes on a loaded test box must not trip it.
    started = time.process_time()
    values = parse_schedule(text, frames=150, field="translation_x")
    assert time.process_time() - started < 2.0
    # Every frame of the job has its own key; keys 150 … 6000 lie beyond max_frames and are dropped.
    assert values[2] == 0.5635054316371679 and values[3] == 0.4416591487824917
    rot = parse_schedule(settings["rotation_3d_x"], frames=150, field="rotation_3d_x")
    assert rot[2] == -1.0245596416266534e-05
