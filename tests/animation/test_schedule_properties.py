"""Property tests: generated schedules give sane values; hostile strings give values or a clear InputError — never
another exception, a hang or a side effect (no file written, no module imported, no global changed)."""

from __future__ import annotations

import builtins
import os
import time
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from framefarm.animation import keyframes
from framefarm.animation.deforum_import import import_deforum
from framefarm.animation.keyframes import is_string_schedule, parse_schedule, parse_string_schedule
from framefarm.animation.prompts import prompts_for_frames
from framefarm.errors import InputError

# Each example must finish well inside this (a hang shows up as a failure, not a stuck suite).
FAST = settings(deadline=2000, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

plain_numbers = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(-1000, 1000, allow_nan=False).map(lambda x: f"{x:.4f}"),
)
expressions = st.sampled_from(["t", "t*0.1", "sin(t/7)*3", "where(t>20, 2, -2)", "s/100", "max_f-t", "1e-2", "4.",
                               "abs(cos(t))", "(t%5)**2", "min(t, 10)"])
values = st.one_of(plain_numbers, expressions)


@st.composite
def schedules(draw):
    frames = draw(st.integers(1, 60))
    keys = draw(st.lists(st.integers(0, frames + 20), min_size=1, max_size=8))
    if min(keys) >= frames:
        keys[0] = 0
    pairs = [f"{key}:({draw(values)})" for key in keys]
    return frames, ", ".join(pairs), keys


@FAST
@given(schedules(), st.sampled_from(["linear", "quadratic", "cubic"]))
def test_generated_schedules_give_finite_values_for_every_frame(case, method):
    frames, text, _ = case
    got = parse_schedule(text, frames=frames, field="f", seed=123, interpolation=method)
    assert got.shape == (frames,) and got.dtype == np.float64 and np.isfinite(got).all()


@FAST
@given(st.integers(1, 80), st.lists(st.tuples(st.integers(0, 100), plain_numbers), min_size=1, max_size=6))
def test_linear_tween_stays_between_its_known_values(frames, pairs):
    assume(any(key < frames for key, _ in pairs))
    text = ", ".join(f"{key}:({value})" for key, value in pairs)
    got = parse_schedule(text, frames=frames, field="f")
    table = {key: float(value) for key, value in pairs if key < frames}  # the later duplicate wins
    known = sorted(table)
    for a, b in zip(known, known[1:]):
        low, high = sorted((table[a], table[b]))
        assert np.all((got[a:b + 1] >= low - 1e-9) & (got[a:b + 1] <= high + 1e-9))
    assert np.all(got[: known[0] + 1] == table[known[0]]) and np.all(got[known[-1]:] == table[known[-1]])


@FAST
@given(st.lists(st.tuples(st.integers(0, 300), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=40),
       st.booleans(), st.booleans())
def test_literal_fast_path_means_what_the_general_path_means(pairs, wrapped, spaced):
    # Camera-tool exports take a fast path; it must agree with the general parser pair for pair.
    sep = ", " if spaced else ","
    text = sep.join(f"{k}:({v!r})" if wrapped else f"{k}:{v!r}" for k, v in pairs)
    fast = keyframes._fast_pairs(text)
    assert fast is not None
    slow = []
    for pair, key, value in keyframes._checked_pairs(text):
        number, interpolate = keyframes._parse_value(value, pair)
        slow.append(keyframes._Pair(pair, keyframes._parse_key(key, pair), number, interpolate))
    assert fast == tuple(slow)


# ----- Hostile input ------------------------------------------------------------------------------------------------

HOSTILE_ALPHABET = st.sampled_from(list("t0123456789.+-*/%()<>=!:,'\" _aeinsxqrw[]{}`\\\n\t#@$^&|~;?") + [
    "max_f", "sin(", "__import__", "().__class__", "lambda:", "9**9**9", "1e999", "--neg", "é", "\x00", "\u202e"])
hostile = st.lists(HOSTILE_ALPHABET, max_size=30).map("".join)


class _Watch:
    """Notices side effects: new files in the working directory, new modules, changed builtins or environment."""

    def __enter__(self):
        self.files = set(os.listdir("."))
        self.modules = set(sys.modules)
        self.builtins = dict(vars(builtins))
        self.environ = dict(os.environ)
        return self

    def __exit__(self, *exc):
        assert set(os.listdir(".")) == self.files
        assert not {m for m in set(sys.modules) - self.modules if not m.startswith(("hypothesis", "_pytest"))}
        assert dict(vars(builtins)) == self.builtins and dict(os.environ) == self.environ
        return False


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _only_values_or_input_errors(call):
    with _Watch():
        try:
            return call()
        except InputError as error:
            assert str(error) and error.field
            return None


@FAST
@given(hostile, st.integers(1, 50), st.sampled_from(["linear", "quadratic", "cubic"]))
def test_hostile_numeric_schedules(text, frames, method):
    got = _only_values_or_input_errors(
        lambda: parse_schedule(text, frames=frames, field="fuzz", seed=7, interpolation=method))
    if got is not None:
        assert got.shape == (frames,) and np.isfinite(got).all()


@FAST
@given(hostile, st.integers(1, 50))
def test_hostile_string_schedules(text, frames):
    got = _only_values_or_input_errors(lambda: parse_string_schedule(text, frames=frames, field="fuzz"))
    if got is not None:
        assert len(got) == frames and all(isinstance(s, str) for s in got)
    assert isinstance(is_string_schedule(text), bool)


@FAST
@given(st.dictionaries(hostile, hostile, min_size=1, max_size=4), st.integers(1, 30), hostile, hostile)
def test_hostile_prompts(prompts, frames, positive, negative):
    got = _only_values_or_input_errors(
        lambda: prompts_for_frames(prompts, frames=frames, positive=positive, negative=negative))
    if got is not None:
        assert len(got) == frames and all(isinstance(p.positive, str) for p in got)


SETTING_VALUES = st.one_of(hostile, st.integers(-5, 300), st.floats(allow_nan=True), st.booleans(), st.none(),
                           st.lists(st.integers(), max_size=2),
                           st.dictionaries(st.text(max_size=3), hostile, max_size=2))
SETTING_KEYS = st.sampled_from(["W", "width", "max_frames", "seed", "animation_mode", "zoom", "rotation_3d_x",
                                "prompts", "positive_prompts", "color_coherence", "diffusion_cadence", "use_init",
                                "init_image", "hybrid_motion", "video_init_path", "cn_1_enabled", "cn_1_weight",
                                "border", "fps", "noise_type", "kernel_schedule", "parseq_manifest", "sampler"])


@FAST
@given(st.dictionaries(SETTING_KEYS, SETTING_VALUES, max_size=8))
def test_hostile_settings_files(changes):
    base = {"max_frames": 5, "prompts": {"0": "a"}, "seed": 1, "animation_mode": "2D"}
    result = _only_values_or_input_errors(lambda: import_deforum(base | changes, seed=3, invalid="skip"))
    if result is not None:
        assert sorted(e.key for e in result.entries) == sorted(base | changes)


@pytest.mark.parametrize("text", ["0:(" * 5000, "0:(" + "(" * 100000 + ")" * 100000 + ")",
                                  ", ".join(f"{i}:(sin(t))" for i in range(20000)), "0:(t**99999)"])
def test_pathological_schedules_finish_fast(text):
    # CPU time of this process, not wall time: the bound guards against super-linear work, and other
    # processes on a loaded test box must not trip it.
    started = time.process_time()
    _only_values_or_input_errors(lambda: parse_schedule(text, frames=100, field="fuzz"))
    assert time.process_time() - started < 3.0
