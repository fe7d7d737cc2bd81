"""Deforum settings import: every key accounted for, contradictions refused, the real published files, TOML out."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import pytest

from framefarm.animation.deforum_import import (
    import_deforum,
    read_settings,
    report_header,
    to_toml,
    unmerge_global_prompts,
)
from framefarm.errors import InputError
from framefarm.job import validate_job
from tests.support.deforum_samples import SAMPLES, needs_samples


def settings(**overrides):
    """A small Deforum settings dict in the extension's own key names (written for these tests)."""
    base = {
        "W": 64, "H": 64, "seed": 5, "sampler": "Euler a", "steps": 20, "batch_name": "Deforum_{timestring}",
        "seed_behavior": "iter", "seed_iter_N": 1, "use_init": False, "strength": 0.8, "strength_0_no_init": True,
        "init_image": None, "use_mask": False, "mask_file": "", "prompts": {"0": "a cat --neg blurry", "4": "a dog"},
        "positive_prompts": "", "negative_prompts": "", "animation_mode": "2D", "max_frames": 8,
        "border": "replicate", "angle": "0:(0)", "zoom": "0:(1.02)", "translation_x": "0:(1)",
        "translation_y": "0:(0)", "translation_z": "0:(1.75)", "transform_center_x": "0:(0.5)",
        "transform_center_y": "0:(0.5)", "rotation_3d_x": "0:(0)", "rotation_3d_y": "0:(0.5)",
        "rotation_3d_z": "0:(0)", "enable_perspective_flip": False, "perspective_flip_theta": "0:(0)",
        "perspective_flip_phi": "0:(0)", "perspective_flip_gamma": "0:(0)", "perspective_flip_fv": "0:(53)",
        "noise_schedule": "0:(0.065)", "strength_schedule": "0:(0.65)", "contrast_schedule": "0:(1.0)",
        "cfg_scale_schedule": "0:(7)", "enable_steps_scheduling": False, "steps_schedule": "0:(25)",
        "fov_schedule": "0:(70)", "aspect_ratio_schedule": "0:(1)", "aspect_ratio_use_old_formula": False,
        "near_schedule": "0:(200)", "far_schedule": "0:(10000)", "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1)',
        "enable_sampler_scheduling": False, "sampler_schedule": '0: ("Euler a")', "enable_checkpoint_scheduling":
        False, "checkpoint_schedule": '0: ("model1.ckpt"), 100: ("model2.safetensors")',
        "enable_clipskip_scheduling": False, "clipskip_schedule": "0:(2)", "amount_schedule": "0:(0.1)",
        "kernel_schedule": "0:(5)", "sigma_schedule": "0:(1)", "threshold_schedule": "0:(0)",
        "color_coherence": "LAB", "color_coherence_image_path": "", "color_coherence_video_every_N_frames": 1,
        "color_force_grayscale": False, "legacy_colormatch": False, "diffusion_cadence": 1,
        "optical_flow_cadence": "None", "cadence_flow_factor_schedule": "0:(1)", "noise_type": "perlin",
        "perlin_octaves": 4, "perlin_persistence": 0.5, "use_depth_warping": True, "depth_algorithm": "Midas-3-Hybrid",
        "midas_weight": 0.2, "padding_mode": "border", "sampling_mode": "bicubic", "video_init_path": "",
        "extract_nth_frame": 1, "extract_from_frame": 0, "hybrid_motion": "None", "hybrid_composite": "None",
        "hybrid_comp_alpha_schedule": "0:(0.5)", "hybrid_flow_method": "RAFT", "cn_1_enabled": False,
        "cn_1_model": "None", "cn_1_module": "none", "cn_1_weight": "0:(1)", "fps": 12, "make_gif": False,
    }
    return base | overrides


def run(data, **kwargs):
    return import_deforum(data, **kwargs)


def job_of(result, name="imported"):
    return validate_job(dict(result.job, name=result.job.get("name", name)))


class TestModes:
    def test_2d(self):
        result = run(settings())
        job = job_of(result)
        assert (job.kind, job.animation_mode, job.frames, job.width, job.height, job.fps) == ("deforum", "2D", 8, 64,
                                                                                             64, 12.0)
        assert job.motion.zoom == "0:(1.02)" and job.motion.translation_z == "0:(0)"  # 3D keys are not imported
        assert job.prompts == {"0": "a cat --neg blurry", "4": "a dog"} and job.seed == 5
        entries = {e.key: e for e in result.entries}
        assert entries["translation_z"].status == "ignored" and "3D mode only" in entries["translation_z"].why
        assert entries["zoom"].status == "mapped" and entries["zoom"].why == "motion.zoom"

    def test_3d(self):
        job = job_of(run(settings(animation_mode="3D", zoom="0:(0)", fov_schedule="0:(60)")))
        assert job.animation_mode == "3D" and job.motion.translation_z == "0:(1.75)"
        assert job.motion.zoom == "0:(1.0)"  # 2D-only: Deforum ignores zoom in 3D (file 03 has zoom 0 there)
        assert job.motion.fov == "0:(60)" and job.depth.algorithm == "Midas-3-Hybrid" and job.sampling_mode == "bicubic"

    def test_video_input(self):
        result = run(settings(animation_mode="Video Input", video_init_path="clip.mp4", extract_from_frame=3))
        job = job_of(result)
        assert job.kind == "video2video" and job.source.video == "clip.mp4" and job.source.start_frame == 3
        assert job.motion.strength == "0:(0.65)" and job.motion.zoom == "0:(1.0)"
        assert any("max_frames frames of the video" in note for note in result.notes)

    def test_interpolation(self):
        result = run(settings(animation_mode="Interpolation"))
        job = job_of(result)
        assert job.kind == "deforum" and job.motion.strength == "0:(0)" and job.motion.zoom == "0:(1.0)"
        assert any("Interpolation" in note for note in result.notes)

    def test_none_mode_is_refused(self):
        with pytest.raises(InputError, match="animation_mode: renders separate still images"):
            run(settings(animation_mode="None"))

    def test_unknown_mode(self):
        with pytest.raises(InputError, match="animation_mode: is not a value Deforum uses here.*2D, 3D"):
            run(settings(animation_mode="4D"))


class TestMapping:
    def test_every_key_is_reported_exactly_once(self):
        data = settings(some_future_key=1)
        result = run(data)
        assert sorted(e.key for e in result.entries) == sorted(data)
        unknown = next(e for e in result.entries if e.key == "some_future_key")
        assert unknown.status == "ignored" and "not a Deforum setting framefarm knows" in unknown.why

    def test_disabled_schedules_are_ignored_enabled_ones_mapped(self):
        off = {e.key: e for e in run(settings()).entries}
        assert off["steps_schedule"].status == "ignored"
        assert "enable_steps_scheduling is off" in off["steps_schedule"].why
        result = run(settings(enable_steps_scheduling=True, steps_schedule="0:(20), 4:(30)",
                              enable_sampler_scheduling=True, sampler_schedule='0:("Euler a"), 4:("DDIM")',
                              enable_checkpoint_scheduling=True, enable_clipskip_scheduling=True))
        job = job_of(result)
        assert job.motion.steps == "0:(20), 4:(30)" and job.motion.clip_skip == "0:(2)"
        assert job.sampler_schedule == '0:("Euler a"), 4:("DDIM")'
        assert job.checkpoint_schedule.startswith('0: ("model1.ckpt")')

    def test_enabled_features_framefarm_does_not_render_are_unsupported(self):
        result = run(settings(use_mask=True, enable_subseed_scheduling=True, subseed_schedule="0:(1)", make_gif=True))
        unsupported = {e.key for e in result.with_status("unsupported")}
        assert {"use_mask", "enable_subseed_scheduling", "make_gif"} <= unsupported

    def test_perspective_flip_cadence_and_colour(self):
        job = job_of(run(settings(enable_perspective_flip=True, perspective_flip_phi="0:(2)", diffusion_cadence=3,
                                  optical_flow_cadence="DIS Fine", cadence_flow_factor_schedule="0:(0.5)",
                                  color_coherence="HSV", color_force_grayscale=True)))
        assert job.motion.perspective_flip.enabled and job.motion.perspective_flip.phi == "0:(2)"
        assert (job.cadence, job.cadence_flow, job.cadence_flow_factor) == (3, "DIS Fine", "0:(0.5)")
        assert job.color_coherence.mode == "HSV" and job.color_coherence.force_grayscale

    def test_colour_match_to_an_image_or_the_hybrid_video(self):
        job = job_of(run(settings(color_coherence="Image", color_coherence_image_path="ref.png")))
        assert (job.color_coherence.mode, job.color_coherence.reference, job.color_coherence.image) == (
            "LAB", "image", "ref.png")
        job = job_of(run(settings(color_coherence="Video Input", hybrid_motion="Optical Flow", video_init_path="v.mp4",
                                  color_coherence_video_every_N_frames=4)))
        assert (job.color_coherence.reference, job.color_coherence.video, job.color_coherence.video_every_n) == (
            "video", "v.mp4", 4)
        assert job.hybrid.motion == "Optical Flow" and job.hybrid.video == "v.mp4"
        result = run(settings(color_coherence="Video Input"))
        assert job_of(result).color_coherence.reference == "first_frame" and any("falls back" in n for n in
                                                                                  result.notes)

    def test_controlnet_unit(self):
        job = job_of(run(settings(cn_1_enabled=True, cn_1_model="control_v11p_sd15_canny [d14c016b]",
                                  cn_1_module="canny", cn_1_weight="0:(0.8)", cn_1_guidance_start="0:(0.1)",
                                  cn_2_enabled=True, cn_2_model="control_v11f1p_sd15_depth", cn_2_module="depth",
                                  cn_2_weight="0:(1), 4:(0.5)")))
        first, second = job.controlnet
        assert (first.model, first.preprocessor, first.weight, first.guidance_start) == (
            "control_v11p_sd15_canny", "canny", 0.8, 0.1)
        assert second.weight_schedule == "0:(1), 4:(0.5)"

    def test_aspect_ratio_old_formula(self):
        job = job_of(run(settings(animation_mode="3D", W=128, H=64, aspect_ratio_use_old_formula=True)))
        assert job.motion.aspect_ratio == "0:(2.0)"

    def test_batch_name_or_explicit_name(self):
        assert "name" not in run(settings()).job  # "Deforum_{timestring}" is no file-safe name
        assert run(settings(batch_name="my-run")).job["name"] == "my-run"
        assert run(settings(batch_name="my-run"), name="other").job["name"] == "other"

    def test_seed(self):
        with pytest.raises(InputError, match=r"seed: is -1 .*Pass the seed"):
            run(settings(seed=-1))
        result = run(settings(seed=-1), seed=99)
        assert result.job["seed"] == 99 and any("random seed per run" in n for n in result.notes)
        assert run(settings(seed=7), seed=8).job["seed"] == 8

    def test_seed_schedule_only_with_its_behaviour(self):
        assert "schedule" not in run(settings()).job["seeds"]
        job = job_of(run(settings(seed_behavior="schedule")))
        assert job.seeds.schedule == '0:(s), 1:(-1), "max_f-2":(-1)'


class TestContradictionsAndErrors:
    @pytest.mark.parametrize(
        ("overrides", "problem"),
        [
            ({"width": 128}, r"W/width: contradict each other \(two different frame sizes\)"),
            ({"positive_prompts": "a", "animation_prompts_positive": "b"}, "contradict each other"),
            ({"use_init": True, "init_image": "None"}, "use_init/init_image: contradict each other"),
            ({"hybrid_composite": "Normal"}, "hybrid video needs video_init_path"),
            ({"color_coherence": "Image"}, "matching to an image needs color_coherence_image_path"),
            ({"animation_mode": "Video Input"}, "Video Input mode needs video_init_path"),
            ({"parseq_manifest": "{\"frames\": []}"}, "parseq_manifest: is not a Parseq manifest"),
            ({"max_frames": 0}, "max_frames: must be ≥ 1"),
            ({"max_frames": 2.5}, "max_frames: must be a whole number"),
            ({"use_init": "yes"}, "use_init: must be true or false"),
            ({"border": "smart"}, "border: is not a value Deforum uses here"),
            ({"prompts": {}}, "prompts: must map frames to prompt texts"),
        ],
    )
    def test_refused(self, overrides, problem):
        with pytest.raises(InputError, match=problem):
            run(settings(**overrides))

    def test_matching_width_and_W_are_fine(self):
        assert run(settings(width=64)).job["width"] == 64

    def test_a_bad_schedule_names_its_key(self):
        with pytest.raises(InputError, match=r"^rotation_3d_x: pair 1 has more than one ':'.*--skip-invalid"):
            run(settings(animation_mode="3D", rotation_3d_x="0: 0: (sin(t))"))

    def test_several_bad_schedules_are_listed_together(self):
        with pytest.raises(InputError, match=r"2 schedules do not parse:\n  angle: .*\n  zoom: "):
            run(settings(zoom="0:(1", angle="0:(nope)"))

    def test_skip_invalid_reports_and_leaves_the_default(self):
        result = run(settings(animation_mode="3D", rotation_3d_x="0: 0: (sin(t))"), invalid="skip")
        refused = result.with_status("refused")
        assert [e.key for e in refused] == ["rotation_3d_x"] and "more than one ':'" in refused[0].why
        assert "rotation_3d_x" not in result.job["motion"]
        assert job_of(result).motion.rotation_3d_x == "0:(0)"

    def test_schedule_values_are_checked_against_the_job(self):
        # An expression fine in general but not finite on this job's frames (t = 4 … 7).
        with pytest.raises(InputError, match=r"zoom: the value evaluates to inf at frame t=5"):
            run(settings(zoom="0:(1), 4:(1/(t-5))"))


class TestPrompts:
    def test_run_saved_prompts_are_unmerged(self):
        # A Deforum run saves f"{positive} {prompt} --neg {negative}" (or without --neg if the prompt had one).
        data = settings(positive_prompts="art,", negative_prompts="nsfw",
                        prompts={"0": "art, a cat --neg nsfw", "4": "art, a dog --neg blurry  nsfw"})
        result = run(data)
        assert result.job["prompts"] == {"0": "a cat", "4": "a dog --neg blurry"}
        assert result.job["positive_prompt"] == "art," and result.job["negative_prompt"] == "nsfw"
        assert any("taken out" in note for note in result.notes)

    def test_hand_written_prompts_are_kept(self):
        data = settings(positive_prompts="art,", negative_prompts="nsfw", prompts={"0": "a cat", "4": "a dog"})
        assert run(data).job["prompts"] == {"0": "a cat", "4": "a dog"}

    def test_unmerge_only_when_every_prompt_is_merged(self):
        prompts = {"0": "art, a --neg x", "5": "b --neg x"}  # the second lacks the positive
        assert unmerge_global_prompts(prompts, "art,", "x", frames=10) == (prompts, False)
        assert unmerge_global_prompts({"0": "a --neg x"}, "", "x", frames=1) == ({"0": "a"}, True)

    def test_prompts_as_a_json_string(self):
        assert run(settings(prompts='{"0": "a"}')).job["prompts"] == {"0": "a"}


class TestToml:
    def test_round_trip_with_awkward_text(self):
        job = {"kind": "deforum", "name": "x", "seed": 3, "fps": 12.5, "flag": True,
               "prompts": {"0": 'quote " backslash \\ tab \t newline \n unicode é ✓ \x7f', "max_f/2": "b"},
               "motion": {"zoom": "0:(1)", "perspective_flip": {"enabled": True}},
               "controlnet": [{"model": "a", "weight": 0.5}, {"model": "b"}]}
        text = to_toml(job, ["a header", "second line"])
        assert text.startswith("# a header\n# second line\n")
        assert tomllib.loads(text) == job

    def test_non_finite_numbers_are_refused(self):
        with pytest.raises(InputError, match="finite"):
            to_toml({"x": float("nan")})


# ----- The real published settings files -------------------------------------------------------------------------


def sample(prefix: str) -> dict:
    path = next(SAMPLES.glob(f"{prefix}_*.txt"), None) if SAMPLES else None
    if path is None:
        pytest.skip(f"sample {prefix} not present")
    return read_settings(path)


@needs_samples
@pytest.mark.parametrize("prefix", ["01", "02", "04"])
def test_real_files_import_cleanly(prefix):
    data = sample(prefix)
    result = import_deforum(data, seed=1234, source=prefix)
    assert not result.with_status("refused")
    assert sorted(e.key for e in result.entries) == sorted(data)
    job = job_of(result)
    assert job.frames == data["max_frames"]
    text = to_toml(result.job, report_header(result, prefix))
    assert tomllib.loads(text) == result.job
    if prefix == "01":  # 3D, cadence 2, run-saved prompts with the global negative merged in
        assert (job.animation_mode, job.cadence, job.negative_prompt) == ("3D", 2, "nsfw, nude")
        assert job.prompts["0"].startswith("tiny cute swamp bunny") and "--neg" not in job.prompts["0"]
        assert job.prompts["60"] == "a beautiful coconut --neg photo, realistic"
    if prefix == "04":  # 6 001 keys per camera schedule, keys past max_frames dropped
        assert job.motion.translation_x.count(":") == 6001 and job.model.checkpoint == (
            "xl/Juggernaut_X_RunDiffusion.safetensors")


@needs_samples
def test_file_03_malformed_schedule_is_reported_not_read_as_zero():
    data = sample("03")
    with pytest.raises(InputError, match=r"^rotation_3d_x: pair 1 has more than one ':'") as caught:
        import_deforum(data, seed=1)
    assert caught.value.field == "rotation_3d_x"
    result = import_deforum(data, seed=1, invalid="skip")
    assert [e.key for e in result.with_status("refused")] == ["rotation_3d_x"]
    job = job_of(result)
    assert (job.width, job.height, job.animation_mode) == (768, 768, "3D")  # `width`/`height`, not W/H, here
    assert "rotation_3d_x: pair 1 has more than one ':'" in "\n".join(report_header(result, "03"))


@needs_samples
def test_file_04_with_6001_keys_imports_well_under_a_second():
    from framefarm.animation.keyframes import _parse_numeric

    data = sample("04")
    _parse_numeric.cache_clear()  # cold: as the first import in a fresh process
    started = time.process_time()
    result = import_deforum(data, seed=1)
    job_of(result)
    elapsed = time.process_time() - started
    assert elapsed < 1.0, f"{elapsed:.2f} s of CPU"


# ----- End to end: import, then render with the preview through the Prefect flow ----------------------------------


def _source_video(tmp_path: Path) -> str:
    from framefarm.renderers.testcard import source_testcard
    from framefarm.video import write_video_frames

    return str(write_video_frames((source_testcard(i, 64, 64, 12) for i in range(12)), tmp_path / "src.mp4", width=64,
                             height=64, fps=12))


def _render(tmp_path: Path, data: dict, name: str):
    from framefarm.flows.render import render_job
    from framefarm.video import probe_video

    result = import_deforum(data, seed=3, name=name, invalid="skip")
    toml_path = tmp_path / f"{name}.toml"
    toml_path.write_text(to_toml(result.job, report_header(result, name)))
    from framefarm.job import load_job

    job = load_job(toml_path)
    rendered = render_job(job, backend="preview", out=str(tmp_path / "renders"), chunk_size=4)
    return job, probe_video(rendered.video)


E2E = [
    ("mode-2d", lambda tmp: settings(enable_perspective_flip=True, perspective_flip_theta="0:(1)")),
    ("mode-3d", lambda tmp: settings(animation_mode="3D", diffusion_cadence=2, rotation_3d_z="0:(2)")),
    ("mode-video-input", lambda tmp: settings(animation_mode="Video Input", video_init_path=_source_video(tmp))),
    ("mode-interpolation", lambda tmp: settings(animation_mode="Interpolation")),
]


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize(("name", "make"), E2E, ids=[name for name, _ in E2E])
def test_each_animation_mode_renders_max_frames(tmp_path, name, make):
    data = make(tmp_path)
    job, video = _render(tmp_path, data, name)
    assert video.frames == data["max_frames"] == job.frames
    assert (video.width, video.height) == (64, 64)


@needs_samples
@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("prefix", ["01"])
def test_real_files_render_with_the_preview(tmp_path, prefix):
    # Small and short to stay fast: 6 frames of 64x64 (file 03 names its size width/height, the others W/H).
    data = sample(prefix) | {"max_frames": 6}
    data |= {key: 64 for key in ("W", "H", "width", "height") if key in data}
    job, video = _render(tmp_path, data, f"real-{prefix}")
    assert video.frames == 6 == job.frames


def test_reading_settings_files(tmp_path):
    with pytest.raises(InputError, match="settings file: no such file"):
        read_settings(tmp_path / "nope.txt")
    (tmp_path / "bad.txt").write_text("{not json")
    with pytest.raises(InputError, match="settings file: is not valid JSON"):
        read_settings(tmp_path / "bad.txt")
    (tmp_path / "list.txt").write_text("[1, 2]")
    with pytest.raises(InputError, match="must hold a JSON object"):
        read_settings(tmp_path / "list.txt")


def test_report_to_dict_is_json():
    result = run(settings())
    assert json.loads(json.dumps(result.to_dict()))["entries"][0]["status"] in ("mapped", "ignored")


def test_job_file_writer_matches_the_library_reader_on_awkward_keys_and_long_series():
    """The writer (tomlkit) and tomllib agree on quoted keys, control characters, long series written a row per
    line, nested tables and arrays of tables, in the order TOML needs (scalars before tables)."""
    job = {"name": "x\"\n\x01\x7f é", "a b": 1, "zoom": [float(i) for i in range(25)], "texts": ["a"] * 12,
           "model": {"k": 1.5e-7, "inner": {"on": True}}, "controlnet": [{"w": 1}, {"w": 2}], "after": 3}
    text = to_toml(job, ["first\n\nsecond"])
    assert text.startswith("# first\n#\n# second\n\n") and "  20.0, 21.0, 22.0, 23.0, 24.0,  # 20\n" in text
    assert tomllib.loads(text) == job
