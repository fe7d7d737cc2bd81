"""Golden values: schedules and prompt schedules with every expected value derived by hand from Deforum's semantics
(shared/design/DEFORUM_SCHEDULES.md), each with the reason it is what it is. Tolerance 1e-9.

The rules used below, in short: a plain-number key sets its frame only (frames after it are open); an expression key
(anything that is not a plain number: ``sin(t)``, ``1e-3``, ``5.``) holds from its key to the next plain-number key;
frame 0 takes the first known value and the last frame the last known value; open frames are interpolated between
known frames (linear unless asked; quadratic needs ≥ 3 keys and cubic ≥ 4, else they fall back); keys outside
0 … frames−1 are dropped; ``max_f`` is frames − 1 and an expression key is truncated like ``int()``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from framefarm.animation.keyframes import parse_schedule, parse_string_schedule
from framefarm.animation.prompts import prompts_for_frames
from framefarm.animation.schedules import evaluate_job_schedules
from framefarm.animation.seeds import frame_seeds
from framefarm.job import validate_job

S = math.sin
C = math.cos

# (id, schedule, frames, options, expected: list of all frames or {frame: value}, why)
NUMERIC = [
    ("single-key", "0:(5)", 3, {}, [5, 5, 5],
     "one plain key: frame 0 is 5, the last frame takes the last known value (5), the open frame between is 5"),
    ("deforum-default-zoom", "0: (1.0025+0.002*sin(1.25*3.14*t/30))", 3, {},
     [1.0025 + 0.002 * S(1.25 * 3.14 * t / 30) for t in range(3)],
     "an expression at key 0 holds for every frame, evaluated at each t"),
    ("linear-two-keys", "0:(0), 10:(10)", 11, {}, list(range(11)), "a straight line from 0 at 0 to 10 at 10"),
    ("negative-values", "0:(-2), 4:(2)", 5, {}, [-2, -1, 0, 1, 2], "linear from -2 to 2 in 4 steps of 1"),
    ("up-down-up", "0:(10), 4:(-10), 8:(10)", 9, {}, [10, 5, 0, -5, -10, -5, 0, 5, 10],
     "two linear segments of 4 frames each, steps of -5 then +5"),
    ("key-past-the-end", "0:(0), 200:(100)", 5, {}, [0] * 5,
     "the key at 200 lies beyond frame 4 and is dropped, not a tween target; the last frame takes 0"),
    ("no-key-at-zero", "2:(4), 4:(8)", 6, {}, [4, 4, 4, 6, 8, 8],
     "frame 0 takes the first known value (4); frame 1 lies between 4 and 4; 6 is halfway from 4 to 8; the last "
     "frame takes the last known 8"),
    ("quoted-max_f-key", '0:(0), "max_f":(100)', 5, {}, [0, 25, 50, 75, 100], "max_f = 4: a line from 0 to 100"),
    ("max_f-half-key", "0:(0), 'max_f/2':(10), max_f:(0)", 9, {}, [0, 2.5, 5, 7.5, 10, 7.5, 5, 2.5, 0],
     "max_f = 8, max_f/2 = 4: up to 10 at frame 4 and back to 0 at frame 8"),
    ("max_f-minus-one", '0:(1), "max_f-1":(3)', 6, {}, [1, 1.5, 2, 2.5, 3, 3],
     "max_f-1 = 4: 1 to 3 over frames 0-4; frame 5 takes the last known value 3"),
    ("truncated-expression-key", "0:(0), 'max_f/2':(59)", 120, {}, {58: 58, 59: 59, 60: 59, 119: 59},
     "max_f/2 = 59.5 is truncated to 59 like int(): a slope of 1 a frame up to 59, then held"),
    ("expression-until-plain", "0:(t), 3:(0)", 5, {}, [0, 1, 2, 0, 0],
     "t holds over frames 0-2, the plain 0 at frame 3 sets its frame and the last frame takes it"),
    ("open-frames-before-expression", "0:(0), 3:(t*t)", 6, {}, [0, 3, 6, 9, 16, 25],
     "frames 1-2 are open between 0 (frame 0) and 9 (t*t at frame 3): 3 and 6; t*t holds from frame 3"),
    ("max_f-in-value", "0:(max_f)", 7, {}, [6] * 7, "max_f = 6 on every frame"),
    ("seed-variable", "0:(s)", 2, {"seed": 42}, [42, 42], "s is the seed"),
    ("default-seed-schedule", '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)', 5, {"seed": 7}, [7, -1, -1, 7, 7],
     "max_f = 4, so keys 0 1 2 3: s at 0 (held until the plain -1 at 1), -1 at 1 and 2, s from 3 to the end"),
    ("exponent-is-an-expression", "0:(1e-3), 4:(1)", 5, {}, [0.001, 0.001, 0.001, 0.001, 1],
     "1e-3 fails Deforum's plain-number test, so it is an expression and holds until the plain 1 at frame 4"),
    ("trailing-dot-is-an-expression", "0:(5.), 2:(1)", 3, {}, [5, 5, 1], "5. is an expression: held, no tween"),
    ("leading-dot-numbers", "0:(.5), 2:(-.5)", 3, {}, [0.5, 0, -0.5], ".5 and -.5 are plain numbers: a tween"),
    ("explicit-plus", "0:(+1), 2:(3)", 3, {}, [1, 2, 3], "+1 is a plain number"),
    ("comma-inside-where", "0:(where(t>2, 1, 0))", 5, {}, [0, 0, 0, 1, 1],
     "commas inside parentheses separate arguments (framefarm; Deforum would split the pair there)"),
    ("comparison-gives-0-or-1", "0:((t>2)*10)", 5, {}, [0, 0, 0, 10, 10], "t>2 is 1 from frame 3 on"),
    ("modulo", "0:(t%3)", 5, {}, [0, 1, 2, 0, 1], "t mod 3 counts 0, 1, 2 and starts again"),
    ("power", "0:(2**t)", 4, {}, [1, 2, 4, 8], "powers of two"),
    ("negated-t", "0:(-t)", 3, {}, [0, -1, -2], "unary minus"),
    ("whitespace-and-newlines", "0: (0),\n 4 : (4)", 5, {}, [0, 1, 2, 3, 4], "spaces and newlines between pairs"),
    ("no-parentheses", "0:1, 2:3", 3, {}, [1, 2, 3], "parentheses around values are optional"),
    ("keys-in-any-order", "4:(4), 0:(0)", 5, {}, [0, 1, 2, 3, 4], "keys are sorted by frame"),
    ("duplicate-key-last-wins", "0:(1), 0:(2)", 2, {}, [2, 2], "the later pair for frame 0 wins"),
    ("negative-key-dropped", "-5:(100), 0:(1)", 3, {}, [1, 1, 1], "frame -5 is outside the job"),
    ("expression-key-past-end", "0:(1), 'max_f+1':(100)", 3, {}, [1, 1, 1], "max_f+1 = 3 lies past frame 2"),
    ("expression-then-line", "0:(-1), 2:(t-5)", 4, {}, [-1, -2, -3, -2],
     "t-5 holds from frame 2 (-3, -2); frame 1 is open between -1 and -3"),
    ("sin-segment", "0:(0), 3:(sin(t)), 6:(2)", 7, {},
     [0, S(3) / 3, 2 * S(3) / 3, S(3), S(4), S(5), 2],
     "sin(t) holds over frames 3-5; frames 1-2 are a line from 0 to sin(3); 2 at frame 6"),
    ("quadratic-parabola", "0:(0), 2:(4), 4:(16)", 5, {"interpolation": "quadratic"}, [0, 1, 4, 9, 16],
     "three points of y = x²: the quadratic through them is x² itself"),
    ("cubic-falls-back-to-quadratic", "0:(0), 2:(4), 4:(16)", 5, {"interpolation": "cubic"}, [0, 1, 4, 9, 16],
     "cubic with 3 keys falls back to quadratic: x² again"),
    ("quadratic-falls-back-to-linear", "0:(0), 10:(100)", 11, {"interpolation": "quadratic"},
     [10 * t for t in range(11)], "quadratic with 2 keys falls back to linear"),
    ("quadratic-spline-reproduces-parabola", "0:(0), 2:(4), 4:(16), 6:(36)", 7, {"interpolation": "quadratic"},
     [t * t for t in range(7)], "a quadratic spline through points of x² is x² (it reproduces quadratics)"),
    ("cubic-through-four", "0:(0), 1:(1), 3:(27), 5:(125)", 6, {"interpolation": "cubic"}, [t**3 for t in range(6)],
     "four points of x³: the one cubic through them is x³"),
    ("cubic-spline-reproduces-cubic", "0:(0), 1:(1), 2:(8), 4:(64), 5:(125)", 6, {"interpolation": "cubic"},
     [t**3 for t in range(6)], "a not-a-knot cubic spline through points of x³ is x³: frame 3 is 27"),
    ("cubic-vs-linear-same-keys", "0:(0), 1:(1), 3:(27), 5:(125)", 6, {"interpolation": "linear"},
     [0, 1, 14, 27, 76, 125], "linear instead: 14 halfway from 1 to 27, 76 halfway from 27 to 125"),
]


@pytest.mark.parametrize(("text", "frames", "options", "expected"),
                         [pytest.param(t, f, o, e, id=i) for i, t, f, o, e, _ in NUMERIC])
def test_numeric_golden(text, frames, options, expected):
    got = parse_schedule(text, frames=frames, field="golden", **options)
    if isinstance(expected, dict):
        frames_checked = list(expected)
        np.testing.assert_allclose(got[frames_checked], list(expected.values()), rtol=0, atol=1e-9)
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_there_are_at_least_thirty_goldens_with_reasons():
    assert len(NUMERIC) + len(STRINGS) + len(INTEGERS) >= 30
    assert all(len(case[-1]) > 10 for case in NUMERIC + STRINGS + INTEGERS)


STRINGS = [
    ("sampler", '0: ("Euler a"), 3: ("DPM++ 2M Karras")', 5, ["Euler a"] * 3 + ["DPM++ 2M Karras"] * 2,
     "each string holds until the next key; no interpolation"),
    ("colon-kept", '0: ("C:/models/a.ckpt")', 2, ["C:/models/a.ckpt"] * 2,
     "a colon inside quotes is part of the string (Deforum cuts it to 'C')"),
    ("checkpoint-default", '0: ("model1.ckpt"), 100: ("model2.safetensors")', 3, ["model1.ckpt"] * 3,
     "Deforum's default checkpoint schedule: the key at 100 lies past frame 2"),
    ("late-first-key-and-max_f", '2: ("a"), "max_f": ("b")', 5, ["a", "a", "a", "a", "b"],
     "frames before the first key take its string; max_f = 4"),
]


@pytest.mark.parametrize(("text", "frames", "expected"), [pytest.param(t, f, e, id=i) for i, t, f, e, _ in STRINGS])
def test_string_golden(text, frames, expected):
    assert parse_string_schedule(text, frames=frames, field="golden") == expected


def _deforum(**motion):
    return validate_job({"kind": "deforum", "name": "golden", "frames": 11, "motion": motion})


# Integer parameters interpolate as floats and are truncated like int() where used.
INTEGERS = [
    ("steps", {"steps": "0:(20), 10:(25)"}, [20, 20, 21, 21, 22, 22, 23, 23, 24, 24, 25],
     "20 + 0.5 t truncated: 20.5 → 20, 21.5 → 21, …"),
    ("clip_skip", {"clip_skip": "0:(1), 10:(2.9)"}, [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2],
     "1 + 0.19 t: below 2 up to frame 5 (1.95), 2.14 at frame 6"),
    ("anti_blur.kernel", {"anti_blur": {"kernel": "0:(5.9)"}}, [5] * 11, "5.9 truncated to 5 (odd: a valid kernel)"),
]


@pytest.mark.parametrize(("name", "motion", "expected"), [pytest.param(n, m, e, id=n) for n, m, e, _ in INTEGERS])
def test_integer_golden(name, motion, expected):
    values = evaluate_job_schedules(_deforum(**motion))
    assert values[name].tolist() == expected


def test_seed_schedule_golden():
    # 10 + 0.75 t truncated: 10, 10.75 → 10, 11.5 → 11, 12.25 → 12, 13.
    seeds = frame_seeds(5, frames=5, behavior="schedule", seed_schedule="0:(10), 4:(13)")
    assert seeds.tolist() == [10, 10, 11, 12, 13]


# ----- Prompt schedules ---------------------------------------------------------------------------------------------

PROMPTS = [
    ("neg", {"0": "a cat --neg dog"}, 1, {}, [("a cat", "dog")], "text after --neg is the negative prompt"),
    ("globals", {"0": "a cat --neg dog"}, 1, {"positive": "masterpiece,", "negative": "blurry"},
     [("masterpiece, a cat", "dog blurry")], "global positive before, global negative after the prompt's negative"),
    ("global-negative-only", {"0": "a cat"}, 1, {"negative": "blurry"}, [("a cat", "blurry")],
     "a prompt without --neg still gets the global negative"),
    ("stray-neg-in-global", {"0": "a cat"}, 1, {"negative": "--neg blurry"}, [("a cat", "blurry")],
     "a --neg inside the global negative is removed"),
    ("second-neg-joins", {"0": "a --neg b --neg c"}, 1, {}, [("a", "b c")], "text after a second --neg joins"),
    ("backtick-math", {"0": "a cat:`0.5+0.5*t`"}, 3, {}, [("a cat:0.5", ""), ("a cat:1.0", ""), ("a cat:1.5", "")],
     "t is the frame; values are written as Python floats"),
    ("backtick-sqrt", {"0": "x `sqrt(t+1)`"}, 2, {}, [("x 1.0", ""), (f"x {math.sqrt(2)!r}", "")],
     "evaluated properly: Deforum's textual t-replacement would break 'sqrt'"),
    ("backtick-max_f", {"0": "w `t/max_f`"}, 3, {}, [("w 0.0", ""), ("w 0.5", ""), ("w 1.0", "")], "max_f = 2"),
    ("late-first-key", {"5": "late", "8": "later"}, 10, {}, [("late", "")] * 8 + [("later", "")] * 2,
     "frames before the first key use the first prompt"),
    ("expression-key", {"0": "a", "max_f/2": "b"}, 6, {}, [("a", "")] * 2 + [("b", "")] * 4,
     "max_f/2 = 2.5, truncated to 2"),
    ("key-past-the-end", {"0": "a", "30": "b"}, 3, {}, [("a", "")] * 3, "the key at 30 lies past frame 2"),
    ("math-in-negative", {"0": "a --neg b `t*2`"}, 2, {}, [("a", "b 0"), ("a", "b 2")],
     "backtick math works in the negative part too; integer arithmetic stays integer, as numexpr's"),
    ("backtick-max_f-integer", {"0": "n `max_f`"}, 3, {}, [("n 2", "")] * 3, "max_f = frames - 1, an integer"),
    ("one-frame-late-key", {"10": "late"}, 1, {}, [("late", "")],
     "no key inside the job: every frame back-fills from the first key past it"),
    ("attention-passes-through", {"0": "(a cat:1.2) AND [bird:fish:0.5]"}, 1, {},
     [("(a cat:1.2) AND [bird:fish:0.5]", "")], "A1111 syntax is left for the prompt encoder"),
]


@pytest.mark.parametrize(("prompts", "frames", "options", "expected"),
                         [pytest.param(p, f, o, e, id=i) for i, p, f, o, e, _ in PROMPTS])
def test_prompt_golden(prompts, frames, options, expected):
    got = prompts_for_frames(prompts, frames=frames, **options)
    assert [(p.positive, p.negative) for p in got] == expected
