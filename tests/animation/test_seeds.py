"""Tests for framefarm.animation.seeds: Deforum's seed behaviours, one step per diffused frame."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framefarm.animation.seeds import DEFAULT_SEED_SCHEDULE, SEED_BEHAVIORS, SEED_MODULUS, frame_seeds
from framefarm.errors import InputError
from tests.support.deforum_samples import SAMPLE_FILES, SAMPLES

S = 1000


def seeds(behavior, frames=8, **kwargs):
    return frame_seeds(S, frames=frames, behavior=behavior, **kwargs).tolist()


class TestBehaviours:
    def test_iter(self):
        assert seeds("iter") == [S + i for i in range(8)]

    def test_iter_n_follows_deforum_counter(self):
        # Deforum adds 1 when its counter (0, 1, 2, ...) is a multiple of seed_iter_N, before counting up.
        assert seeds("iter", iter_n=2) == [S, S + 1, S + 1, S + 2, S + 2, S + 3, S + 3, S + 4]
        assert seeds("iter", iter_n=3) == [S, S + 1, S + 1, S + 1, S + 2, S + 2, S + 2, S + 3]

    def test_fixed(self):
        assert seeds("fixed") == [S] * 8

    def test_ladder(self):
        assert seeds("ladder") == [S, S + 2, S + 1, S + 3, S + 2, S + 4, S + 3, S + 5]

    def test_alternate(self):
        assert seeds("alternate") == [S, S + 1, S, S + 1, S, S + 1, S, S + 1]

    def test_random_is_reproducible_and_starts_with_the_job_seed(self):
        first = seeds("random")
        assert first == seeds("random")
        assert first[0] == S and len(set(first)) == 8
        assert frame_seeds(S + 1, frames=8, behavior="random").tolist() != first
        assert all(0 <= s < SEED_MODULUS for s in first)

    def test_random_seed_of_a_frame_does_not_depend_on_the_job_length(self):
        assert seeds("random", frames=20)[:8] == seeds("random", frames=8)

    def test_result_type(self):
        out = frame_seeds(S, frames=5)
        assert out.dtype == np.int64 and out.shape == (5,)


class TestCadence:
    def test_one_step_per_diffused_frame(self):
        diffused = [True, False, True, False, True, False]
        assert seeds("iter", frames=6, diffused=diffused) == [S, S, S + 1, S + 1, S + 2, S + 2]
        assert seeds("ladder", frames=6, diffused=diffused) == [S, S, S + 2, S + 2, S + 1, S + 1]

    def test_frames_before_the_first_diffused_frame_keep_the_base_seed(self):
        assert seeds("iter", frames=4, diffused=[False, False, True, True]) == [S, S, S, S + 1]
        assert seeds("iter", frames=3, diffused=[False] * 3) == [S] * 3

    def test_random_seed_of_a_diffused_frame_does_not_depend_on_the_cadence(self):
        every = seeds("random", frames=9)
        third = seeds("random", frames=9, diffused=[i % 3 == 0 for i in range(9)])
        assert third == [S, S, S, every[3], every[3], every[3], every[6], every[6], every[6]]

    def test_schedule_is_read_at_diffused_frames(self):
        got = seeds("schedule", frames=5, seed_schedule="0:(10), 4:(14)", diffused=[True, False, True, False, True])
        assert got == [10, 10, 12, 12, 14]

    def test_numpy_bool_array(self):
        assert seeds("iter", frames=3, diffused=np.array([1, 0, 1])) == [S, S, S + 1]


class TestSchedule:
    def test_default_schedule_is_deforums(self):
        assert DEFAULT_SEED_SCHEDULE == '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)'
        got = seeds("schedule", frames=8)
        rand = seeds("random", frames=8)
        # Frame 0 and frames max_f-1 … max_f are the job seed; frames 1 … max_f-2 are random (-1).
        assert got[0] == S and got[6:] == [S, S]
        assert got[1:6] == rand[1:6]

    def test_values_are_interpolated_then_truncated(self):
        assert seeds("schedule", frames=5, seed_schedule="0:(5), 4:(9)") == [5, 6, 7, 8, 9]
        assert seeds("schedule", frames=4, seed_schedule="0:(0), 3:(1)") == [0, 0, 0, 1]

    def test_expressions_with_s_and_t(self):
        assert seeds("schedule", frames=3, seed_schedule="0:(s+t*10)") == [S, S + 10, S + 20]

    def test_negative_values_other_than_minus_one_wrap(self):
        assert seeds("schedule", frames=2, seed_schedule="0:(-5)") == [SEED_MODULUS - 5] * 2

    def test_ignored_for_other_behaviours(self):
        assert seeds("fixed", seed_schedule="0:(1)") == [S] * 8

    def test_bad_schedule_names_the_field(self):
        with pytest.raises(InputError, match=r"^seeds\.schedule: has unbalanced parentheses"):
            seeds("schedule", seed_schedule="0:(1")
        with pytest.raises(InputError, match=r"^seeds\.schedule: has a seed beyond"):
            seeds("schedule", seed_schedule="0:(1e300)")


class TestWrapAndErrors:
    def test_iter_wraps_past_the_largest_seed(self):
        got = frame_seeds(SEED_MODULUS - 2, frames=4).tolist()
        assert got == [SEED_MODULUS - 2, SEED_MODULUS - 1, 0, 1]

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"seed": -1}, r"^seed: is -1 \(random\), which must be resolved before planning"),
            ({"seed": SEED_MODULUS}, r"^seed: is outside 0 … 4294967295"),
            ({"seed": -7}, r"^seed: is outside"),
            ({"seed": True}, r"^seed: must be a whole number"),
            ({"seed": 1.5}, r"^seed: must be a whole number"),
            ({"behavior": "chaos"}, r"^seeds\.behavior: is not a known seed behaviour.*iter, fixed, random"),
            ({"iter_n": 0}, r"^seeds\.iter_n: must be a whole number ≥ 1"),
            ({"frames": 0}, r"^frames: must be a whole number of frames ≥ 1"),
            ({"diffused": [True, False]}, r"^diffused: must be 4 booleans, one per frame"),
            ({"diffused": [0.5] * 4}, r"^diffused: must be 4 booleans"),
        ],
    )
    def test_invalid_input(self, kwargs, match):
        args = {"seed": 5, "frames": 4, **kwargs}
        with pytest.raises(InputError, match=match):
            frame_seeds(args.pop("seed"), **args)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, SEED_MODULUS - 1),
    behavior=st.sampled_from(SEED_BEHAVIORS),
    iter_n=st.integers(1, 4),
    diffused=st.lists(st.booleans(), min_size=1, max_size=40),
)
def test_properties(seed, behavior, iter_n, diffused):
    got = frame_seeds(seed, frames=len(diffused), behavior=behavior, iter_n=iter_n, diffused=diffused)
    assert got.dtype == np.int64 and got.shape == (len(diffused),)
    assert ((got >= 0) & (got < SEED_MODULUS)).all()
    previous = seed
    for frame, is_diffused in enumerate(diffused):
        if not is_diffused:
            assert got[frame] == previous  # non-diffused frames keep the current seed
        previous = got[frame]
    if behavior != "schedule" and diffused[0]:
        assert got[0] == seed
    assert np.array_equal(got, frame_seeds(seed, frames=len(diffused), behavior=behavior, iter_n=iter_n,
                                           diffused=diffused))


@pytest.mark.skipif(SAMPLES is None, reason="Deforum sample settings not found (set FRAMEFARM_DEFORUM_SAMPLES)")
@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name[:2])
def test_seed_settings_of_real_files(path):
    settings = json.loads(path.read_text(encoding="utf-8"))
    seed = settings["seed"] if settings["seed"] != -1 else 1234
    frames = int(settings["max_frames"])
    cadence = int(settings.get("diffusion_cadence", 1))
    diffused = [i % cadence == 0 for i in range(frames)]
    for behavior in ("schedule", settings["seed_behavior"]):
        got = frame_seeds(seed, frames=frames, behavior=behavior, iter_n=int(settings["seed_iter_N"]),
                          seed_schedule=settings["seed_schedule"], diffused=diffused)
        assert got.shape == (frames,) and got[0] == seed
