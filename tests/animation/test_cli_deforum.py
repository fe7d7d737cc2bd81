"""The Deforum CLI contract, run as a user runs it: subprocesses, exit codes, stdout JSON, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import cv2
import pytest


def framefarm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "framefarm", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    return lines[0]


class TestSchedule:
    def test_numbers(self, tmp_path):
        run = framefarm("schedule", "0:(1), 4:(2)", "--frames", "6", "--json", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == [1.0, 1.25, 1.5, 1.75, 2.0, 2.0]

    def test_interpolation_and_seed(self, tmp_path):
        # s = 16 at the last key: three points of x², so the quadratic tween is x² itself.
        run = framefarm("schedule", "0:(0), 2:(4), 4:(s)", "--frames", "5", "--interpolation", "quadratic",
                        "--seed", "16", "--json", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == pytest.approx([0, 1, 4, 9, 16], abs=1e-9)

    def test_string_schedule_gives_strings(self, tmp_path):
        run = framefarm("schedule", '0: ("Euler a"), 2: ("C:/m/a.ckpt")', "--frames", "4", "--json", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == ["Euler a", "Euler a", "C:/m/a.ckpt", "C:/m/a.ckpt"]

    @pytest.mark.parametrize(
        ("schedule", "pointer"),
        [
            ("0:(1", "the '(' at character 2 is never closed"),
            ("0:(1), 5:2,3", "pair 3 has no ':' between frame and value"),
            ("0:(1), 3:(__import__(os))", "calls '__import__'"),
        ],
    )
    def test_invalid_exits_2_with_one_line_naming_the_bad_part(self, tmp_path, schedule, pointer):
        line = one_line_error(framefarm("schedule", schedule, "--frames", "5", "--json", cwd=tmp_path))
        assert line.startswith("invalid input schedule:") and pointer in line

    def test_bad_interpolation(self, tmp_path):
        line = one_line_error(framefarm("schedule", "0:(1)", "--frames", "3", "--interpolation", "spline",
                                        cwd=tmp_path))
        assert "--interpolation: is not an interpolation (got 'spline')" in line

    def test_table_without_json(self, tmp_path):
        run = framefarm("schedule", "0:(0), 2:(1)", "--frames", "3", cwd=tmp_path)
        assert run.stdout.splitlines() == ["0\t0.0", "1\t0.5", "2\t1.0"]

    def test_plot(self, tmp_path):
        out = tmp_path / "curves.png"
        run = framefarm("schedule", "0:(sin(t/4))", '0:("a"), 10:("b")', "--frames", "40", "--plot", str(out),
                        cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip().splitlines()[-1] == str(out)
        image = cv2.imread(str(out))
        assert image is not None and image.shape[1] == 960
        # Both curves are drawn in their colours (BGR): the first blue-ish, the second green-ish.
        assert ((image[..., 0] > 150) & (image[..., 2] < 100)).sum() > 200
        assert ((image[..., 1] > 100) & (image[..., 0] < 80) & (image[..., 2] < 80)).sum() > 100



class TestPrompts:
    def test_per_frame_json(self, tmp_path):
        path = tmp_path / "prompts.json"
        path.write_text(json.dumps({"prompts": {"0": "a cat `t*2` --neg dog", "3": "a bird"},
                                    "positive_prompts": "art,", "negative_prompts": "blurry"}))
        run = framefarm("prompts", str(path), "--frames", "5", "--json", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == [
            {"prompt": "art, a cat 0", "negative_prompt": "dog blurry"},
            {"prompt": "art, a cat 2", "negative_prompt": "dog blurry"},
            {"prompt": "art, a cat 4", "negative_prompt": "dog blurry"},
            {"prompt": "art, a bird", "negative_prompt": "blurry"},
            {"prompt": "art, a bird", "negative_prompt": "blurry"},
        ]

    def test_seed_in_backtick_math_and_frames_from_the_file(self, tmp_path):
        path = tmp_path / "p.json"
        path.write_text(json.dumps({"prompts": {"0": "seed `s`"}, "max_frames": 2}))
        run = framefarm("prompts", str(path), "--seed", "7", "--json", cwd=tmp_path)
        assert [row["prompt"] for row in json.loads(run.stdout)] == ["seed 7", "seed 7"]

    def test_errors(self, tmp_path):
        path = tmp_path / "p.json"
        path.write_text(json.dumps({"prompts": {"0": "a `sqrt(t`"}}))
        assert "unbalanced parentheses" in one_line_error(framefarm("prompts", str(path), "--frames", "2", "--json",
                                                                    cwd=tmp_path))
        path.write_text(json.dumps({"prompts": {"0": "a"}}))
        assert "--frames: is needed" in one_line_error(framefarm("prompts", str(path), cwd=tmp_path))


SETTINGS = {
    "W": 64, "H": 64, "seed": -1, "sampler": "Euler a", "steps": 20, "seed_behavior": "iter", "max_frames": 6,
    "animation_mode": "2D", "prompts": {"0": "a cat", "3": "a dog"}, "zoom": "0:(1.01)", "angle": "0:(1)",
    "translation_x": "0:(0)", "strength_schedule": "0:(0.6)", "fps": 12, "use_mask": True, "wild_key": 3,
}


class TestImportDeforum:
    def test_writes_a_job_that_validates_and_reports(self, tmp_path):
        (tmp_path / "s.txt").write_text(json.dumps(SETTINGS))
        run = framefarm("import-deforum", "s.txt", "-o", "job.toml", "--seed", "42", "--report", "r.json",
                        cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip().splitlines()[-1] == "job.toml"
        assert "unsupported: use_mask: masked rendering is not supported" in run.stderr
        job = tomllib.loads((tmp_path / "job.toml").read_text())
        assert job["kind"] == "deforum" and job["seed"] == 42 and job["motion"]["zoom"] == "0:(1.01)"
        report = json.loads((tmp_path / "r.json").read_text())
        assert {e["key"] for e in report["entries"]} == set(SETTINGS)
        validated = framefarm("validate", "job.toml", cwd=tmp_path)
        assert validated.returncode == 0, validated.stderr
        assert json.loads(validated.stdout)["name"] == "job"

    def test_random_seed_when_the_file_says_minus_one(self, tmp_path):
        (tmp_path / "s.txt").write_text(json.dumps(SETTINGS))
        run = framefarm("import-deforum", "s.txt", "-o", "job.toml", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert 0 <= tomllib.loads((tmp_path / "job.toml").read_text())["seed"] < 2**32
        assert "random seed per run" in run.stderr

    def test_refuses_to_overwrite_without_force(self, tmp_path):
        (tmp_path / "s.txt").write_text(json.dumps(SETTINGS))
        (tmp_path / "job.toml").write_text("keep me")
        line = one_line_error(framefarm("import-deforum", "s.txt", "-o", "job.toml", "--seed", "1", cwd=tmp_path))
        assert "--out: already exists" in line and (tmp_path / "job.toml").read_text() == "keep me"
        assert framefarm("import-deforum", "s.txt", "-o", "job.toml", "--seed", "1", "--force",
                         cwd=tmp_path).returncode == 0

    def test_malformed_schedule_exits_2_naming_the_key_then_skip_invalid(self, tmp_path):
        bad = SETTINGS | {"zoom": "0: 0: (1.01)"}
        (tmp_path / "s.txt").write_text(json.dumps(bad))
        line = one_line_error(framefarm("import-deforum", "s.txt", "-o", "job.toml", "--seed", "1", cwd=tmp_path))
        assert line.startswith("invalid input zoom: pair 1 has more than one ':'") and "--skip-invalid" in line
        assert not (tmp_path / "job.toml").exists()
        run = framefarm("import-deforum", "s.txt", "-o", "job.toml", "--seed", "1", "--skip-invalid", cwd=tmp_path)
        assert run.returncode == 0 and "refused: zoom: pair 1 has more than one ':'" in run.stderr
        text = (tmp_path / "job.toml").read_text()
        assert "#   zoom: pair 1 has more than one ':'" in text and "zoom =" not in text

    def test_contradiction_exits_2(self, tmp_path):
        (tmp_path / "s.txt").write_text(json.dumps(SETTINGS | {"width": 128}))
        line = one_line_error(framefarm("import-deforum", "s.txt", "-o", "job.toml", "--seed", "1", cwd=tmp_path))
        assert "W/width: contradict each other" in line
