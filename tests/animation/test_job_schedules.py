"""The Deforum parameters of the job spec and how schedules.py evaluates and checks them."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from framefarm.animation.plan import plan_job
from framefarm.animation.schedules import evaluate_job_schedules, evaluate_string_schedules, frame_table
from framefarm.errors import InputError
from framefarm.job import job_from_preset, validate_job

ANIMATION_DIR = Path(__file__).resolve().parents[2] / "framefarm" / "animation"


def deforum(**fields):
    return validate_job({"kind": "deforum", "name": "spec", "frames": 10} | fields)


class TestSpec:
    def test_defaults_are_deforums_and_keep_the_camera_still(self):
        job = deforum()
        assert (job.animation_mode, job.cadence, job.noise_type, job.perlin_octaves, job.padding_mode,
                job.sampling_mode) == ("2D", 1, "perlin", 4, "border", "bicubic")
        assert (job.motion.fov, job.motion.near, job.motion.far, job.motion.perspective_flip.fv) == (
            "0:(70)", "0:(200)", "0:(10000)", "0:(53)")
        assert (job.motion.anti_blur.amount, job.motion.anti_blur.kernel) == ("0:(0.1)", "0:(5)")
        assert job.color_coherence.mode == "LAB" and job.hybrid.motion == "None" and job.depth.enabled
        assert plan_job(job, renderer="preview@1").chunks[0].camera_matrix(9) == pytest.approx(np.eye(3))

    def test_every_numeric_schedule_becomes_a_plan_value(self):
        values = plan_job(deforum(), renderer="preview@1").chunks[0].values
        for name in ("translation_z", "rotation_3d_x", "fov", "near", "far", "aspect_ratio", "perspective_flip.phi",
                     "anti_blur.kernel", "cadence_flow_factor", "hybrid.comp_alpha", "hybrid.flow_factor"):
            assert len(values[name]) == 10, name
        assert "steps" not in values and "clip_skip" not in values  # unset: the model table's values apply

    def test_other_kinds_get_the_motion_fields_but_not_the_deforum_ones(self):
        job = job_from_preset("animatediff-drift", ["frames=4"])
        values = evaluate_job_schedules(job)
        assert "rotation_3d_x" in values and "hybrid.comp_alpha" not in values
        assert evaluate_string_schedules(job) == {}

    @pytest.mark.parametrize(
        ("fields", "problem"),
        [
            ({"color_coherence": {"reference": "image"}}, 'reference = "image" needs image'),
            ({"color_coherence": {"image": "a.png"}}, 'image is set but reference is "first_frame"'),
            ({"color_coherence": {"mode": "None", "reference": "video", "video": "v.mp4"}}, "needs colour matching on"),
            ({"hybrid": {"motion": "Optical Flow"}}, 'need video = "clip.mp4"'),
            ({"animation_mode": "2.5D"}, "animation_mode"),
            ({"cadence_flow": "RIFE"}, "cadence_flow"),
            ({"motion": {"perspective_flip": {"enabled": True, "tilt": "0:(1)"}}}, "tilt: is not a known field"),
            ({"depth": {"algorithm": "MiDaS"}}, "depth.algorithm"),
        ],
    )
    def test_invalid_specs(self, fields, problem):
        with pytest.raises(InputError, match=problem):
            deforum(**fields)


class TestChecks:
    @pytest.mark.parametrize(
        ("motion", "problem"),
        [
            ({"strength": "0:(0.5), 9:(1.5)"}, r"motion\.strength: is 1\.05556 at frame 5 \(and 4 more\); it must be "
                                               r"between 0 and 1"),
            ({"noise": "0:(-0.1)"}, r"motion\.noise: is -0\.1 at frame 0"),
            ({"fov": "0:(70), 5:(180)"}, r"motion\.fov: is 180 at frame 5"),
            ({"near": "0:(0)"}, r"motion\.near: is 0 at frame 0"),
            ({"far": "0:(100)"}, r"motion\.far: is 100 at frame 0 .*must be greater than near"),
            ({"steps": "0:(0.9)"}, r"motion\.steps: is 0 at frame 0"),
            ({"clip_skip": "0:(13)"}, r"motion\.clip_skip: is 13"),
            ({"anti_blur": {"kernel": "0:(5), 9:(3)"}}, r"motion\.anti_blur\.kernel: is 4 at frame 1 .*odd"),
            ({"perspective_flip": {"enabled": True, "fv": "0:(0)"}}, r"motion\.perspective_flip\.fv: is 0"),
            ({"zoom": "0:(1), 4:(-1)"}, r"motion\.zoom: is 0 at frame 2 \(and 7 more\)"),
            ({"aspect_ratio": "0:(0)"}, r"motion\.aspect_ratio: is 0"),
        ],
    )
    def test_meaningless_values_name_the_field_and_first_frame(self, motion, problem):
        with pytest.raises(InputError, match=problem):
            deforum(motion=motion)

    def test_even_kernel_is_fine_where_anti_blur_is_off(self):
        job = deforum(motion={"anti_blur": {"kernel": "0:(4)", "amount": "0:(0)"}})
        assert job.motion.anti_blur.kernel == "0:(4)"  # accepted as written: no error where it has no effect

    def test_flip_fv_is_only_checked_when_the_flip_is_on(self):
        job = deforum(motion={"perspective_flip": {"fv": "0:(0)"}})
        assert job.motion.perspective_flip.fv == "0:(0)"

    def test_string_and_seed_schedules_are_checked_at_load(self):
        with pytest.raises(InputError, match=r"sampler_schedule: .*unterminated"):
            deforum(sampler_schedule='0: ("Euler a)')
        with pytest.raises(InputError, match=r"seeds\.schedule: .*unbalanced"):
            deforum(seeds={"behavior": "schedule", "schedule": "0:(s"})

    def test_hybrid_schedules_name_their_field(self):
        with pytest.raises(InputError, match=r"hybrid\.comp_alpha: has unbalanced parentheses"):
            deforum(hybrid={"comp_alpha": "0:(0.5"})


class TestValues:
    def test_integer_schedules_are_truncated(self):
        values = evaluate_job_schedules(deforum(motion={"steps": "0:(20), 9:(29.5)", "clip_skip": "0:(2.7)"}))
        assert values["steps"].tolist() == [20, 21, 22, 23, 24, 25, 26, 27, 28, 29]
        assert values["clip_skip"].tolist() == [2] * 10

    def test_string_schedules_per_frame(self):
        job = deforum(sampler_schedule='0: ("Euler a"), 5: ("DDIM")', checkpoint_schedule='0: ("C:/a.ckpt")')
        strings = evaluate_string_schedules(job)
        assert strings["sampler_schedule"] == ["Euler a"] * 5 + ["DDIM"] * 5
        assert strings["checkpoint_schedule"] == ["C:/a.ckpt"] * 10

    def test_frame_table(self):
        job = deforum(cadence=2, prompts={"0": "a cat --neg dog", "6": "a bird"}, seed=100,
                      motion={"steps": "0:(20), 9:(29)"}, sampler_schedule='0: ("Euler a"), 5: ("DDIM")')
        rows = frame_table(job, range(4, 8))
        assert [r["frame"] for r in rows] == [4, 5, 6, 7]
        assert [r["diffused"] for r in rows] == [True, False, True, False]
        assert [r["seed"] for r in rows] == [102, 102, 103, 103]  # iter: one step per diffused frame
        assert rows[0]["prompt"] == "a cat" and rows[0]["negative_prompt"] == "dog" and rows[2]["prompt"] == "a bird"
        assert [r["steps"] for r in rows] == [24, 25, 26, 27] and isinstance(rows[0]["steps"], int)
        assert [r["sampler_schedule"] for r in rows] == ["Euler a", "DDIM", "DDIM", "DDIM"]
        assert rows[0]["zoom"] == 1.0 and isinstance(rows[0]["zoom"], float)


NEW_MODULES = ("camera.py", "coherence.py", "deforum_import.py", "schedules.py", "plan.py", "keyframes.py",
               "prompts.py", "seeds.py", "safe_math.py")


@pytest.mark.parametrize("module", NEW_MODULES)
def test_animation_runs_no_user_code_and_imports_no_heavy_stack(module):
    tree = ast.parse((ANIMATION_DIR / module).read_text(encoding="utf-8"))
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & {"eval", "exec", "compile", "__import__"}
    imported = {alias.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"torch", "diffusers", "prefect", "pydantic", "skimage", "scipy", "matplotlib"}
