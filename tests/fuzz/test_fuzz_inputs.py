"""Fuzzing the user-text surfaces: schedule expressions and keyframe schedules, prompts (frame prompts, A1111
attention weights, LoRA tags), job specs and ``--set`` overrides, Deforum settings import, and the HTTP API's job
JSON. Every input gives a clean result or a clear error (``InputError`` naming its field, or the API's validation
error): never another exception, never a hang (each call is time-boxed), never a file written."""

from __future__ import annotations

import math
import tomllib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framefarm.animation.deforum_import import import_deforum, to_toml
from framefarm.animation.keyframes import parse_schedule, parse_string_schedule
from framefarm.animation.prompts import prompts_for_frames
from framefarm.animation.safe_math import compile_expression
from framefarm.errors import InputError
from framefarm.job import resolve_job_dict, validate_job
from framefarm.renderers.prompt_weights import extract_extra_networks, parse_attention
from tests.fuzz.conftest import EXAMPLES, time_box

FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                             HealthCheck.too_slow])

# Pieces of the schedule grammar and of what attackers and typos add to it.
EXPRESSION_TOKENS = st.sampled_from([
    "t", "max_f", "s", "pi", "e", "sin(", "cos(", "tan(", "abs(", "min(", "max(", "where(", "(", ")", ",", "+", "-",
    "*", "/", "**", "%", "<", "==", " ", "0", "1", "0.5", "30", "1e308", "-1e308", "nan", "inf", "9**9**9",
    "__class__", "__import__('os')", ".", "[", "]", "lambda x:", "[x for x in t]", "x", "if", "else", "'a'", "os",
    "open(", "eval(", "t.real", "()" * 3, "(" * 60, ")" * 60, "#", "\n", ";", "=", ":=",
])
expressions = st.one_of(st.lists(EXPRESSION_TOKENS, max_size=25).map("".join), st.text(max_size=80))
SCHEDULE_TOKENS = st.sampled_from(["0", "10", "-5", "1e9", "max_f", "t", ":", "(", ")", ",", " ", "1.5", "0.5*t",
                                   "sin(t)", '"', "'", "x", "::", "", "\t", "nan"])
schedules = st.one_of(st.lists(SCHEDULE_TOKENS, max_size=30).map("".join), st.text(max_size=80))
PROMPT_TOKENS = st.sampled_from(["a cat", "(", ")", "[", "]", ":", "1.2", "-3", "<lora:", "<lyco:", "<hypernet:",
                                 ">", "tiny", ":0.5", "\\(", "\\", "BREAK", "AND", "--neg", " ", "{", "}", "`t`",
                                 "${t}", "`sin(t)`", "`__import__('os')`", "::", "<", "|"])
prompts = st.one_of(st.lists(PROMPT_TOKENS, max_size=30).map("".join), st.text(max_size=80))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=12), inner,
                                                                                 max_size=4)), max_leaves=12)


def only_clean_or_input_error(call):
    """Run ``call`` time-boxed; an ``InputError`` must name its field. Returns the result or the error."""
    try:
        with time_box():
            return call()
    except InputError as exc:
        assert exc.field and str(exc), "an InputError without a field or message"
        return exc


@FUZZ
@given(expressions)
def test_schedule_expressions(sandbox, text):
    result = only_clean_or_input_error(lambda: compile_expression(text, field="motion.zoom"))
    if isinstance(result, InputError):
        return
    t = np.arange(12, dtype=np.float64)
    value = only_clean_or_input_error(lambda: result.evaluate(t=t, max_f=11.0, s=7.0))
    if not isinstance(value, InputError):
        assert np.all(np.isfinite(np.broadcast_to(value, t.shape)))  # a non-finite result is refused, not returned


@FUZZ
@given(schedules, st.integers(1, 50), st.sampled_from(["linear", "quadratic", "cubic"]))
def test_numeric_keyframe_schedules(sandbox, text, frames, interpolation):
    result = only_clean_or_input_error(
        lambda: parse_schedule(text, frames=frames, field="motion.zoom", interpolation=interpolation))
    if not isinstance(result, InputError):
        assert result.shape == (frames,) and np.all(np.isfinite(result))


@FUZZ
@given(st.one_of(schedules, prompts), st.integers(1, 30))
def test_string_schedules(sandbox, text, frames):
    result = only_clean_or_input_error(lambda: parse_string_schedule(text, frames=frames, field="sampler_schedule"))
    if not isinstance(result, InputError):
        assert len(result) == frames and all(isinstance(v, str) for v in result)


@FUZZ
@given(st.dictionaries(st.one_of(st.integers(-5, 60), schedules), prompts, min_size=1, max_size=5),
       st.integers(1, 40), prompts)
def test_frame_prompts(sandbox, table, frames, negative):
    result = only_clean_or_input_error(lambda: prompts_for_frames(table, frames=frames, negative=negative, seed=1))
    if not isinstance(result, InputError):
        assert len(result) == frames


@FUZZ
@given(prompts)
def test_attention_weights_and_extra_network_tags(sandbox, text):
    parts = only_clean_or_input_error(lambda: parse_attention(text))
    if not isinstance(parts, InputError):
        assert all(math.isfinite(p.weight) for p in parts)
    only_clean_or_input_error(lambda: extract_extra_networks(text, field="prompts"))


JOB_KEYS = st.sampled_from(["kind", "name", "frames", "fps", "width", "height", "seed", "prompts", "preset",
                            "motion", "output", "model", "farm", "batch_size", "controlnet", "source", "init_image",
                            "strength", "negative_prompt"])
job_dicts = st.dictionaries(JOB_KEYS, json_values, max_size=8).map(
    lambda d: {**d, "kind": d.get("kind", "deforum")})
overrides = st.lists(st.one_of(
    st.builds("{}={}".format, st.sampled_from(["frames", "name", "motion.zoom", "fps", "farm.chunk_retries",
                                               "prompts.0", "output.codec", "a.b.c", "", "name.x"]),
              st.one_of(schedules, prompts, st.text(max_size=20))),
    st.text(max_size=30)), max_size=4)


@FUZZ
@given(job_dicts, overrides)
def test_job_specs_and_overrides(sandbox, data, sets):
    def resolve_and_validate():
        return validate_job(resolve_job_dict(data, sets))

    only_clean_or_input_error(resolve_and_validate)


DEFORUM_KEYS = st.sampled_from([
    "animation_mode", "max_frames", "W", "H", "seed", "seed_behavior", "prompts", "positive_prompts",
    "negative_prompts", "zoom", "angle", "translation_x", "translation_z", "rotation_3d_y", "strength_schedule",
    "noise_schedule", "fps", "diffusion_cadence", "color_coherence", "sampler", "steps", "cfg_scale_schedule",
    "batch_name", "outdir", "init_image", "use_init", "video_init_path", "hybrid_composite", "border",
    "sd_model_name", "perspective_flip_theta", "fov_schedule", "cn_1_enabled", "cn_1_model", "cn_1_weight",
    "seed_schedule", "sampler_schedule",
])
deforum_values = st.one_of(json_values, schedules, prompts,
                           st.dictionaries(st.one_of(st.integers(0, 99).map(str), schedules), prompts, max_size=3))


@FUZZ
@given(st.dictionaries(DEFORUM_KEYS, deforum_values, max_size=12), st.sampled_from(["error", "skip"]))
def test_deforum_settings_import(sandbox, settings_dict, invalid):
    result = only_clean_or_input_error(lambda: import_deforum(settings_dict, invalid=invalid, source="fuzz.txt"))
    if isinstance(result, InputError):
        return
    # What the importer writes must itself be a job file that parses back as TOML.
    text = only_clean_or_input_error(lambda: to_toml(result.job))
    if not isinstance(text, InputError):
        tomllib.loads(text)


@FUZZ
@given(st.one_of(job_dicts, st.just({"preset": "zoom-tunnel"}).map(lambda d: dict(d))), overrides,
       st.sampled_from(["preview", "diffusers", "../../bin/sh", "", "eval"]))
def test_api_job_json(sandbox, job, sets, backend):
    from pydantic import ValidationError

    from framefarm.api.jobs import JobRequest, JobValidationError, validate_request

    try:
        with time_box():
            request = JobRequest.model_validate({"job": job, "overrides": sets, "backend": backend})
            validate_request(request)
    except (JobValidationError, ValidationError) as exc:
        assert str(exc)
