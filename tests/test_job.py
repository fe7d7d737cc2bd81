"""Job specs: validation messages, presets, overrides."""

from __future__ import annotations

import json

import pytest

from framefarm.errors import InputError
from framefarm.job import AnimateDiffJob, DeforumJob, Video2VideoJob, job_from_preset, load_job, parse_override
from framefarm.presets import load_preset, preset_names

MINIMAL = 'kind = "deforum"\nname = "t"\n'


def test_minimal_deforum_job_gets_defaults(job_file):
    job = load_job(job_file(MINIMAL))
    assert isinstance(job, DeforumJob)
    assert (job.width, job.height, job.fps, job.frames) == (512, 512, 24.0, 48)


def test_json_job_files_are_accepted(job_file):
    job = load_job(job_file(json.dumps({"kind": "animatediff", "name": "j", "prompts": {0: "x"}}), "job.json"))
    assert isinstance(job, AnimateDiffJob)
    assert job.prompts == {"0": "x"}


def test_name_defaults_to_file_stem(job_file):
    job = load_job(job_file('kind = "deforum"\n', "My Clip.toml"))
    assert job.name == "My-Clip"


def test_unknown_kind_lists_allowed_kinds(job_file):
    with pytest.raises(InputError, match=r"kind: is not a job kind \(got 'deform'\)\. Use one of: deforum, animatediff, video2video"):
        load_job(job_file('kind = "deform"\n'))


def test_every_problem_is_reported_with_field_and_value(job_file):
    with pytest.raises(InputError) as info:
        load_job(job_file(MINIMAL + "frames = 0\nwidth = 500\nfsp = 30\n"))
    message = str(info.value)
    assert "3 problems" in message
    assert "frames: Input should be greater than or equal to 1 (got 0)" in message
    assert "width: Input should be a multiple of 8 (got 500)" in message
    assert "fsp: is not a known field (a typo?)" in message


def test_video2video_needs_a_source(job_file):
    with pytest.raises(InputError, match="source: is required"):
        load_job(job_file('kind = "video2video"\nname = "v"\n'))


def test_bad_schedule_names_its_field(job_file):
    with pytest.raises(InputError, match=r"motion\.zoom"):
        load_job(job_file(MINIMAL + '[motion]\nzoom = "0:(1.0"\n'))


def test_job_name_cannot_escape_the_output_root(job_file):
    with pytest.raises(InputError, match=r"name: cannot be a folder name under --out \(got .\.\./\.\./etc.\)"):
        load_job(job_file('kind = "deforum"\nname = "../../etc"\n'))


def test_controlnet_guidance_window_is_checked(job_file):
    text = MINIMAL + '[[controlnet]]\nmodel = "c"\nguidance_start = 0.8\nguidance_end = 0.2\n'
    with pytest.raises(InputError, match=r"controlnet\.0: guidance_start \(0\.8\) must not be after guidance_end"):
        load_job(job_file(text))


def test_invalid_toml_names_the_file_and_position(job_file):
    with pytest.raises(InputError, match=r"is not valid TOML.*line 2"):
        load_job(job_file('kind = "deforum"\nframes = = 3\n'))


def test_preset_is_the_base_and_the_file_overrides_it(job_file):
    job = load_job(job_file('preset = "zoom-tunnel"\nframes = 10\n[motion]\nangle = "0:(3)"\n'))
    preset = load_preset("zoom-tunnel")
    assert job.frames == 10
    assert job.motion.angle == "0:(3)"
    assert job.motion.zoom == preset["motion"]["zoom"]  # sibling fields of an overridden table survive
    assert job.name == "zoom-tunnel" and job.kind == "deforum"


def test_set_overrides_beat_file_and_preset(job_file):
    job = load_job(job_file('preset = "zoom-tunnel"\nframes = 10\n'),
                   ["frames=24", "motion.zoom=0:(1.01)", "prompts.0=a red fox", "output.crf=20"])
    assert job.frames == 24
    assert job.motion.zoom == "0:(1.01)"
    assert job.prompts["0"] == "a red fox"
    assert job.output.crf == 20


def test_a_jobs_prompts_replace_the_presets_whole_and_schedules_still_merge_per_field(job_file):
    # zoom-tunnel has prompts at frames 0 and 48: none of them may survive next to the job's own.
    job = load_job(job_file('preset = "zoom-tunnel"\nframes = 96\n[prompts]\n0 = "a red fox"\n'
                            '[motion]\nangle = "0:(3)"\n'))
    assert job.prompts == {"0": "a red fox"}
    assert job.motion.angle == "0:(3)" and job.motion.zoom == load_preset("zoom-tunnel")["motion"]["zoom"]
    # Without a [prompts] table the preset's prompts stay; --set changes one prompt and keeps the others.
    kept = load_job(job_file('preset = "zoom-tunnel"\n', name="kept.toml"), ["prompts.96=a blue fox"])
    assert kept.prompts == {**load_preset("zoom-tunnel")["prompts"], "96": "a blue fox"}
    # The API resolves submissions the same way (JSON prompts may have number keys).
    from framefarm.job import resolve_job_dict

    assert resolve_job_dict({"preset": "zoom-tunnel", "prompts": {0: "a red fox"}})["prompts"] == {"0": "a red fox"}


def test_set_reaches_into_lists(job_file):
    job = load_job(job_file('preset = "video-restyle"\n'), ["controlnet.0.weight=0.5"])
    assert isinstance(job, Video2VideoJob)
    assert job.controlnet[0].weight == 0.5


@pytest.mark.parametrize("text, path, value", [
    ("frames=24", ["frames"], 24),
    ("fps=29.97", ["fps"], 29.97),
    ("output.loop=true", ["output", "loop"], True),
    ('prompts.0="quoted text"', ["prompts", "0"], "quoted text"),
    ("prompts.12=plain words, with comma", ["prompts", "12"], "plain words, with comma"),
])
def test_parse_override_reads_toml_values(text, path, value):
    assert parse_override(text) == (path, value)


def test_set_without_equals_is_an_input_error():
    with pytest.raises(InputError, match="--set: must look like key=value"):
        parse_override("frames")


def test_unknown_preset_lists_the_shipped_ones(job_file):
    with pytest.raises(InputError, match="preset: is not a shipped preset.*zoom-tunnel"):
        load_job(job_file('preset = "nope"\n'))


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_validates(name):
    job = job_from_preset(name)
    assert job.name == name
    assert job.frames >= 1


def test_specs_are_frozen(job_file):
    job = load_job(job_file(MINIMAL))
    with pytest.raises(Exception, match="frozen"):
        job.frames = 3
