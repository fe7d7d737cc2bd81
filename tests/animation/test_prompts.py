"""Tests for framefarm.animation.prompts: Deforum prompt schedules, --neg, global prompts and backtick math."""

from __future__ import annotations

import dataclasses
import json
import math
import time

import pytest

from framefarm.animation.prompts import FramePrompt, prompts_for_frames
from framefarm.errors import InputError
from tests.support.deforum_samples import SAMPLE_FILES, SAMPLES


def positives(prompts, frames, **kwargs):
    return [p.positive for p in prompts_for_frames(prompts, frames=frames, **kwargs)]


class TestKeys:
    def test_last_key_at_or_before_each_frame(self):
        assert positives({"0": "a", "2": "b", "4": "c"}, 6) == ["a", "a", "b", "b", "c", "c"]

    def test_frames_before_the_first_key_use_the_first_prompt(self):
        assert positives({"3": "late", "5": "later"}, 6) == ["late"] * 5 + ["later"]

    def test_keys_in_any_order_and_int_keys(self):
        assert positives({4: "c", "0": "a", 2: "b"}, 5) == ["a", "a", "b", "b", "c"]

    def test_keys_beyond_the_last_frame_are_dropped(self):
        assert positives({"0": "a", "30": "b", "60": "c"}, 5) == ["a"] * 5

    def test_with_no_key_inside_the_job_every_frame_back_fills_from_the_first_key(self):
        # Deforum stores keys past the job after its frames and back-fills: a one-frame job keyed at 10 renders the
        # prompt at 10; with several keys past the end, the first one written wins.
        assert positives({"10": "late `t*2`"}, 1) == ["late 0"]
        assert positives({"20": "b", "10": "a"}, 3) == ["b", "b", "b"]
        assert positives({"max_f+5": "x"}, 2) == ["x", "x"]

    def test_expression_keys_are_evaluated_and_truncated(self):
        # max_f/2 at 6 frames is 2.5 → 2; max_f/4-5 at 120 frames is 24.75 → 24 (Deforum's init_images keys).
        assert positives({"0": "a", "max_f/2": "b"}, 6) == ["a", "a", "b", "b", "b", "b"]
        got = positives({"0": "a", "max_f/4-5": "b"}, 120)
        assert got[23] == "a" and got[24] == "b"
        assert positives({"0": "a", "max_f": "end"}, 4) == ["a", "a", "a", "end"]

    def test_fractional_key_is_truncated(self):
        assert positives({"0": "a", "2.9": "b"}, 4) == ["a", "a", "b", "b"]
        assert positives({0: "a", 1.5: "b"}, 3) == ["a", "b", "b"]

    def test_negative_keys_are_dropped_and_truncation_goes_toward_zero(self):
        assert positives({"0": "a", "-3": "b"}, 3) == ["a"] * 3
        assert positives({"1": "a", "max_f-2.5": "b"}, 3) == ["b", "a", "a"]  # 2-2.5 = -0.5 → frame 0

    def test_later_key_wins_on_the_same_frame(self):
        assert positives({"0": "a", "max_f-max_f": "b"}, 2) == ["b", "b"]


class TestNegativesAndGlobals:
    def test_neg_splits_the_prompt(self):
        got = prompts_for_frames({"0": "a cat --neg blurry, ugly"}, frames=1)
        assert got == [FramePrompt("a cat", "blurry, ugly")]

    def test_global_positive_before_and_global_negative_after(self):
        got = prompts_for_frames({"0": "a cat --neg blurry"}, frames=1, positive="masterpiece,", negative="nsfw")
        assert got[0] == FramePrompt("masterpiece, a cat", "blurry nsfw")

    def test_prompt_without_neg_gets_the_global_negative(self):
        got = prompts_for_frames({"0": "a cat"}, frames=1, negative="nsfw, nude")
        assert got[0] == FramePrompt("a cat", "nsfw, nude")

    def test_stray_neg_in_the_global_negative_is_removed(self):
        got = prompts_for_frames({"0": "a cat --neg blurry"}, frames=1, negative="--neg nsfw")
        assert got[0].negative == "blurry nsfw"

    def test_text_after_a_second_neg_joins_the_negative(self):
        got = prompts_for_frames({"0": "a cat --neg blurry --neg ugly"}, frames=1, negative="nsfw")
        assert got[0] == FramePrompt("a cat", "blurry ugly nsfw")

    def test_neg_in_the_global_positive_is_refused(self):
        with pytest.raises(InputError, match=r"^positive_prompt: contains --neg.*negative_prompt instead"):
            prompts_for_frames({"0": "a"}, frames=1, positive="good --neg bad")

    def test_empty_everything(self):
        assert prompts_for_frames({"0": ""}, frames=1) == [FramePrompt("", "")]

    def test_a1111_syntax_passes_through_untouched(self):
        text = "(a cat:1.2) AND (a dog:0.8), [bird:fish:0.5], <lora:add-detail-xl:1>, ((masterpiece)), [[x]]"
        got = prompts_for_frames({"0": f"{text} --neg (worst quality:1.4)"}, frames=1)
        assert got[0] == FramePrompt(text, "(worst quality:1.4)")

    def test_inner_whitespace_is_kept(self):
        assert positives({"0": "  a\n  cat  "}, 1, positive=" p ") == ["p a\n  cat"]


class TestBacktickMath:
    def test_design_doc_example(self):
        got = positives({"0": "a cat:`0.5+0.5*sin(t/3)`"}, 4)
        assert got[0] == "a cat:0.5"
        assert float(got[3].split(":")[1]) == pytest.approx(0.5 + 0.5 * math.sin(1.0), rel=1e-15)

    def test_evaluated_properly_not_by_replacing_the_letter_t(self):
        # Deforum replaces "t" textually, which breaks sqrt(); here sqrt(t+1) at t=3 is 2.
        assert positives({"0": "x `sqrt(t+1)` y"}, 4)[3] == "x 2.0 y"

    # Expected texts are numexpr 2.14's str() of the expression with t and max_f substituted as integer literals,
    # which is what Deforum writes into the prompt (frames 0 and 3 of a 10-frame job).
    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("t*2", ["0", "6"]),
            ("t/2", ["0.0", "1.5"]),
            ("2**t", ["1", "8"]),
            ("2**-1", ["0.5", "0.5"]),
            ("abs(t-5)", ["5", "2"]),
            ("floor(t/2)", ["0.0", "1.0"]),
            ("ceil(t)", ["0", "3"]),
            ("t%3", ["0", "0"]),
            ("t>5", ["False", "False"]),
            ("(t>5)*10", ["0", "0"]),
            ("where(t>1,2,3.5)", ["3.5", "2"]),
            ("0.5+0.5*sin(t/3)", ["0.5", "0.9207354924039483"]),
            ("t+1.0", ["1.0", "4.0"]),
            ("max_f", ["9", "9"]),
            ("max_f/2", ["4.5", "4.5"]),
            ("(t>1)&(t<3)", ["False", "False"]),
            ("cos(0)", ["1.0", "1.0"]),
        ],
    )
    def test_numexpr_result_types(self, expression, expected):
        got = positives({"0": f"`{expression}`"}, 10)
        assert [got[0], got[3]] == expected

    def test_result_types_mix_per_frame_inside_functions(self):
        # min/max are framefarm extensions: integer when every argument is; where() picks its branch per frame.
        got = positives({"0": "`max(t, where(t>1, 1, 2.5))` `min(1, 2, t)`"}, 3)
        assert got == ["2.5 0", "2.5 1", "2 1"]

    def test_deforum_number_formatting(self):
        got = positives({"0": "`t/2` `1` `0.1+0.2` `1e-5` `max_f`"}, 6)
        # numexpr's types, as Deforum prints them: t/2 is a float, 1 and max_f are integers.
        assert got[0] == "0.0 1 0.30000000000000004 1e-05 5"
        assert got[3] == "1.5 1 0.30000000000000004 1e-05 5"

    def test_t_counts_frames_of_the_job_not_of_the_key(self):
        assert positives({"0": "a", "2": "b `t`"}, 4) == ["a", "a", "b 2", "b 3"]

    def test_math_in_negative_and_global_prompts(self):
        got = prompts_for_frames({"0": "a --neg b:`t*2`"}, frames=2, positive="p`t`", negative="n`t+10`")
        assert got == [FramePrompt("p0 a", "b:0 n10"), FramePrompt("p1 a", "b:2 n11")]

    def test_attention_weight_schedule(self):
        got = positives({"0": "(a cat:`where(t<2, 1, 1.5)`)"}, 3)
        # where() with a constant condition gives the picked branch's type in numexpr: the integer 1, the float 1.5.
        assert got == ["(a cat:1)", "(a cat:1)", "(a cat:1.5)"]

    @pytest.mark.parametrize(
        ("prompt", "problem"),
        [
            ("a `t", r"has an unclosed backtick"),
            ("a `` b", r"has an empty `` math block"),
            ("a `t.real`", r"contains attribute access"),
            ("a `__import__(os)`", r"calls '__import__'"),
            ("a `s`", r"uses the name 's'"),
            ("a `1/(t-1)`", r"evaluates to inf at frame t=1"),
        ],
    )
    def test_errors_name_the_prompt_key(self, prompt, problem):
        with pytest.raises(InputError, match=problem) as caught:
            prompts_for_frames({"0": prompt}, frames=3)
        assert caught.value.field == "prompts['0']"

    def test_static_prompts_share_one_instance(self):
        got = prompts_for_frames({"0": "a", "5": "b"}, frames=10)
        assert got[0] is got[4] and got[5] is got[9]
        with pytest.raises(dataclasses.FrozenInstanceError):
            got[0].positive = "x"  # type: ignore[misc]

    def test_100k_frames_with_math_is_fast(self):
        # CPU time of this process, not wall time: the bound guards against super-linear work, and other
        # processes on a loaded test box must not trip it.
        started = time.process_time()
        got = prompts_for_frames({"0": "a cat:`0.5+0.5*sin(t/3)` --neg b", "50000": "a dog"}, frames=100_000)
        assert time.process_time() - started < 2.0
        assert len(got) == 100_000 and got[99_999] == FramePrompt("a dog", "")


class TestErrors:
    @pytest.mark.parametrize(
        ("prompts", "field", "problem"),
        [
            ({}, "prompts", "must map frame numbers to prompts"),
            ("0: a cat", "prompts", "must map frame numbers to prompts"),
            ({"0": None}, r"prompts\['0'\]", "must be the prompt text"),
            ({"t": "a"}, r"prompts\['t'\]", "uses the name 't'"),
            ({"0:": "a"}, r"prompts\['0:'\]", "is not a valid expression"),
            ({True: "a"}, r"prompts\[True\]", "is not a frame number"),
            ({float("nan"): "a"}, r"prompts\[nan\]", "is not a finite frame number"),
        ],
    )
    def test_bad_prompts(self, prompts, field, problem):
        with pytest.raises(InputError, match=rf"^{field}: {problem}"):
            prompts_for_frames(prompts, frames=10)

    def test_custom_field_name(self):
        with pytest.raises(InputError, match=r"^shots\.0\.prompts\['x'\]: "):
            prompts_for_frames({"x": "a"}, frames=3, field="shots.0.prompts")

    @pytest.mark.parametrize("frames", [0, -2, 1.5, True])
    def test_bad_frames(self, frames):
        with pytest.raises(InputError, match=r"^frames: must be a whole number"):
            prompts_for_frames({"0": "a"}, frames=frames)

    def test_global_prompts_must_be_text(self):
        with pytest.raises(InputError, match=r"^negative_prompt: must be text"):
            prompts_for_frames({"0": "a"}, frames=1, negative=None)  # type: ignore[arg-type]


@pytest.mark.skipif(SAMPLES is None, reason="Deforum sample settings not found (set FRAMEFARM_DEFORUM_SAMPLES)")
@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name[:2])
def test_prompts_of_real_settings_files(path):
    settings = json.loads(path.read_text(encoding="utf-8"))
    frames = int(settings["max_frames"])
    positive = settings.get("positive_prompts", settings.get("animation_prompts_positive", ""))
    negative = settings.get("negative_prompts", settings.get("animation_prompts_negative", ""))
    got = prompts_for_frames(settings["prompts"], frames=frames, positive=positive, negative=negative)
    assert len(got) == frames and all(p.positive for p in got)
    if path.name.startswith("01_"):
        # Keys 0/30/60/90 with --neg in each prompt and "nsfw, nude" as the job-wide negative.
        assert got[0].positive.startswith("tiny cute swamp bunny") and got[0].negative == "nsfw, nude nsfw, nude"
        assert got[30].positive.startswith("anthropomorphic clean cat") and got[29].positive == got[0].positive
    # The init_images mapping uses expression keys too ("max_f/4-5", "3*max_f/4-15", ...).
    if "init_images" in settings:
        images = prompts_for_frames(json.loads(settings["init_images"]), frames=120, field="init_images")
        assert images[0].positive.endswith("Gi1.png") and images[24].positive.endswith("Gi2.png")
