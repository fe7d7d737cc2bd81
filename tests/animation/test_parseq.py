"""Parseq manifests: every frame's values against the rules of Deforum's Parseq adapter, the import, the job table,
``plan --frames`` and a preview render of an imported settings file."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from framefarm.animation.deforum_import import import_deforum, to_toml
from framefarm.animation.job_frames import job_prompts, job_seeds
from framefarm.animation.keyframes import parse_schedule
from framefarm.animation.parseq import PARSEQ_FIELDS, load_manifest, parseq_series
from framefarm.animation.schedules import evaluate_job_schedules, frame_table
from framefarm.errors import InputError
from framefarm.job import load_job, validate_job

# ----- Manifests as Parseq writes them --------------------------------------------------------------------------------
# Parseq's Deforum integration renders every frame from 0 to the last keyframe; each frame carries every managed
# field's value, its *_delta (the change from the previous frame: a ratio for zoom, a difference otherwise) and its
# *_pc (percentage of the field's range), plus the prompt Deforum reads. Around them: meta, options, and
# rendered_frames_meta (per-field max/min/abs-max).

KEYFRAMES = {  # field -> {frame: value}; linear between keys, held after the last (Parseq's default interpolation)
    "zoom": {0: 1.0, 6: 1.06, 11: 1.0},
    "angle": {0: 0.0, 11: 5.5},
    "translation_x": {0: 0.0, 4: 8.0, 11: -6.0},
    "translation_y": {0: 0.0, 11: 2.2},
    "translation_z": {0: 0.0, 11: 11.0},
    "rotation_3d_x": {0: 0.0, 11: 1.1},
    "rotation_3d_y": {0: 0.0, 11: -2.2},
    "rotation_3d_z": {0: 0.5, 11: 0.5},
    "perspective_flip_theta": {0: 0.0, 11: 1.0},
    "perspective_flip_phi": {0: 0.0, 11: 2.0},
    "perspective_flip_gamma": {0: 0.0, 11: 3.0},
    "perspective_flip_fv": {0: 53.0, 11: 60.0},
    "noise": {0: 0.04, 11: 0.08},
    "strength": {0: 0.55, 5: 0.75, 11: 0.6},
    "contrast": {0: 1.0, 11: 1.05},
    "scale": {0: 7.0, 11: 9.2},
    "seed": {0: 1000.0, 11: 1011.0},
    "fov": {0: 40.0, 11: 50.0},
    "near": {0: 200.0, 11: 200.0},
    "far": {0: 10000.0, 11: 10000.0},
    "subseed": {0: 7.0, 11: 7.0},
    "subseed_strength": {0: 0.0, 11: 0.0},
    "antiblur_kernel": {0: 5.0, 11: 5.0},
    "antiblur_sigma": {0: 1.0, 11: 1.5},
    "antiblur_amount": {0: 0.1, 11: 0.3},
    "antiblur_threshold": {0: 0.0, 11: 0.0},
}
PROMPTS = {0: "a neon city `t*2` --neg blurry", 6: "a forest at dusk --neg blurry, text"}
MOTION = ("zoom", "angle", "translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
          "rotation_3d_z", "perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma")


def _curve(keys: dict[int, float], frame: int) -> float:
    points = sorted(keys.items())
    for (f0, v0), (f1, v1) in itertools.pairwise(points):
        if f0 <= frame <= f1:
            return v0 + (v1 - v0) * (frame - f0) / (f1 - f0)
    return points[-1][1]


def parseq_manifest(last_frame: int = 11, *, drop_from_first: tuple[str, ...] = (), fps: int = 12) -> dict:
    """A manifest in Parseq's shape for frames 0 … last_frame."""
    frames = []
    for frame in range(last_frame + 1):
        entry: dict = {"frame": frame}
        for field, keys in KEYFRAMES.items():
            value = round(_curve(keys, frame), 6)
            before = round(_curve(keys, frame - 1), 6) if frame else value
            entry[field] = value
            if field in MOTION:
                # Frame 0 has no previous frame: its delta is its value (the move from a still start).
                entry[f"{field}_delta"] = (value / before if field == "zoom" else value - before) if frame else value
            entry[f"{field}_pc"] = 0
        entry["deforum_prompt"] = PROMPTS[max(k for k in PROMPTS if k <= frame)]
        frames.append(entry)
    for field in drop_from_first:
        for key in [k for k in frames[0] if k == field or k.startswith(f"{field}_")]:
            del frames[0][key]
    return {
        "meta": {"generated_by": "sd_parseq", "version": "0.1.94", "generated_at": "Thu, 03 Dec 2026 21:09:06 GMT",
                 "doc_id": "doc-9c4e5f0a", "version_id": "version-2b1d"},
        "options": {"input_fps": "", "bpm": 120, "output_fps": fps, "cc_window_width": 0, "cc_window_slide_rate": 1,
                    "cc_use_input": False},
        "managedFields": list(KEYFRAMES),
        "displayedFields": list(KEYFRAMES)[:4],
        "keyframes": [{"frame": 0, "zoom": 1}, {"frame": last_frame, "zoom": 1}],
        "timeSeries": [],
        "keyframeLock": "frames",
        "reverseRender": False,
        "rendered_frames": frames,
        "rendered_frames_meta": {f: {"max": 1, "min": 0, "isFlat": False} for f in KEYFRAMES},
    }


def adapter_series(manifest: dict, name: str, frames: int) -> list:
    """Deforum's adapter, restated as plainly as possible: NaN everywhere; each entry whose frame is inside the job
    sets that frame (a later entry wins); then from the last entry's frame to the end, the last entry's value."""
    if name not in manifest["rendered_frames"][0]:
        return None
    series = [math.nan] * frames
    frame = None
    for entry in manifest["rendered_frames"]:
        frame = entry["frame"]
        if frame < frames:
            series[frame] = entry[name]
    while frame < frames:
        series[frame] = manifest["rendered_frames"][-1][name]
        frame += 1
    return series


def deforum_settings(manifest, frames: int, **overrides) -> dict:
    base = {"W": 64, "H": 64, "seed": 5, "max_frames": frames, "animation_mode": "2D", "fps": 12,
            "prompts": {"0": "the settings' own prompt"}, "positive_prompts": "global,", "negative_prompts": "bad",
            "seed_behavior": "iter", "zoom": "0:(1.02)", "angle": "0:(0)", "translation_x": "0:(3)",
            "noise_schedule": "0:(0.065)", "strength_schedule": "0:(0.65)", "cfg_scale_schedule": "0:(7)",
            "seed_schedule": "0:(s), 1:(-1), \"max_f-2\":(-1), \"max_f-1\":(s)", "color_coherence": "None",
            "diffusion_cadence": 1, "enable_perspective_flip": True, "kernel_schedule": "0:(5)",
            "amount_schedule": "0:(0.1)", "parseq_use_deltas": True,
            "parseq_manifest": manifest if isinstance(manifest, str) else json.dumps(manifest)}
    return base | overrides


def imported_job(manifest, frames: int, **overrides):
    result = import_deforum(deforum_settings(manifest, frames, **overrides), source="s.txt")
    return result, validate_job(dict(result.job, name="pq"))


# Which plan value (or prompt/seed) each Parseq field lands in.
VALUE_OF = {spec.parseq: spec.value for spec in PARSEQ_FIELDS}


def check_every_frame(job, manifest, frames: int, use_deltas: bool, settings: dict) -> None:
    values = evaluate_job_schedules(job)
    seeds = job_seeds(job, [True] * frames)
    prompts = job_prompts(job)
    for spec in PARSEQ_FIELDS:
        name = spec.parseq + ("_delta" if use_deltas and spec.motion else "")
        expected = adapter_series(manifest, name, frames)
        if spec.parseq == "deforum_prompt":
            assert expected is not None
            for frame in range(frames):
                positive, negative = expected[frame].replace("`t*2`", str(frame * 2)).split("--neg")
                assert (prompts[frame].positive, prompts[frame].negative) == (positive.strip(), negative.strip())
        elif spec.parseq == "seed":
            if expected is None:
                continue
            assert seeds.tolist() == [int(v) for v in expected]
        elif spec.value is None:
            continue  # subseed: reported, not rendered
        elif expected is None:  # not driven: the settings' schedule, as Deforum falls back to it
            key = spec.setting
            assert values[spec.value].tolist() == parse_schedule(settings[key], frames=frames, field=key).tolist()
        else:
            got = values[spec.value].tolist()
            if spec.value == "anti_blur.kernel":
                expected = [math.trunc(v) for v in expected]
            assert got == expected, spec.parseq


class TestAdapterRules:
    @pytest.mark.parametrize("use_deltas", [False, True])
    @pytest.mark.parametrize("frames", [12, 7, 20])  # as long as the manifest, shorter, longer
    def test_every_frame_matches_the_adapter(self, use_deltas, frames):
        manifest = parseq_manifest(11)
        settings = deforum_settings(manifest, frames, parseq_use_deltas=use_deltas, amount_schedule="0:(0.1)")
        result = import_deforum(settings, source="s.txt")
        job = validate_job(dict(result.job, name="pq"))
        check_every_frame(job, manifest, frames, use_deltas, settings)

    def test_3d_animation(self):
        manifest = parseq_manifest(11)
        settings = deforum_settings(manifest, 12, animation_mode="3D", translation_z="0:(0)", fov_schedule="0:(70)")
        result = import_deforum(settings, source="s.txt")
        job = validate_job(dict(result.job, name="pq"))
        assert job.animation_mode == "3D" and job.parseq.fov[11] == 50.0
        check_every_frame(job, manifest, 12, True, settings)
        assert any("drives zoom, angle, which a 3D animation does not use" in note for note in result.notes)

    def test_deltas_and_absolutes_are_different_series(self):
        manifest = parseq_manifest(11)
        absolute = parseq_series(manifest, frames=12, use_deltas=False)
        delta = parseq_series(manifest, frames=12, use_deltas=True)
        assert absolute.read_from["zoom"] == "zoom" and delta.read_from["zoom"] == "zoom_delta"
        assert absolute.values["zoom"][6] == pytest.approx(1.06) and delta.values["zoom"][6] == pytest.approx(1.06 / 1.05)
        assert delta.read_from["strength"] == "strength"  # not a camera move: never a delta
        assert absolute.values["cfg_scale"] == delta.values["cfg_scale"]

    def test_shorter_manifest_holds_its_last_values(self):
        series = parseq_series(parseq_manifest(4), frames=9, use_deltas=False)
        assert series.values["translation_x"] == (0.0, 2.0, 4.0, 6.0, 8.0, 8.0, 8.0, 8.0, 8.0)
        assert series.prompts[8] == PROMPTS[0]
        assert any("frames 5–8 hold the last entry's values (frame 4)" in note for note in series.notes)

    def test_longer_manifest_is_cut_at_the_job(self):
        series = parseq_series(parseq_manifest(11), frames=3, use_deltas=False)
        assert series.values["translation_x"] == (0.0, 2.0, 4.0)
        assert any("entries past frame 2 are ignored" in note for note in series.notes)

    def test_a_field_missing_from_the_first_frame_is_not_driven(self):
        manifest = parseq_manifest(11, drop_from_first=("noise", "zoom", "seed"))
        settings = deforum_settings(manifest, 12)
        result, job = imported_job(manifest, 12)
        assert {"noise", "zoom", "seed"}.isdisjoint(job.parseq.model_dump(exclude_none=True))
        check_every_frame(job, manifest, 12, True, settings)
        entries = {e.key: e for e in result.entries}
        assert entries["noise_schedule"].status == "mapped" and entries["zoom"].status == "mapped"
        assert entries["strength_schedule"].status == "ignored" and "Parseq drives it" in entries[
            "strength_schedule"].why
        # No Parseq seed: Deforum still takes every frame's seed from the settings' seed schedule.
        assert job.seeds.behavior == "schedule" and job.seeds.schedule == settings["seed_schedule"]

    def test_duplicates_are_reported_and_the_last_entry_wins(self):
        manifest = parseq_manifest(5)
        repeat = dict(manifest["rendered_frames"][2], strength=0.99)
        manifest["rendered_frames"].insert(4, repeat)
        series = parseq_series(manifest, frames=6, use_deltas=False)
        assert series.values["strength"][2] == 0.99
        assert any("frame(s) 2 are listed more than once" in note for note in series.notes)

    def test_entries_past_the_job_are_not_read_at_all(self):
        manifest = parseq_manifest(9)
        manifest["rendered_frames"][7].pop("strength")
        manifest["rendered_frames"][8]["scale"] = "not a number"
        assert parseq_series(manifest, frames=5, use_deltas=True).values["strength"][4] == pytest.approx(0.71)

    def test_missing_frames_are_refused_naming_them(self):
        manifest = parseq_manifest(9)
        del manifest["rendered_frames"][3:5]
        with pytest.raises(InputError, match=r"sets no value for frame\(s\) 3, 4 of the job \(Deforum would render"):
            parseq_series(manifest, frames=10, use_deltas=True)
        # Past the job's end a gap does not matter: those entries are ignored anyway.
        assert parseq_series(manifest, frames=3, use_deltas=True).values["zoom"][2] == pytest.approx(1.02 / 1.01)

    @pytest.mark.parametrize(
        ("change", "problem"),
        [
            (lambda m: m["rendered_frames"][2].pop("strength"), r"rendered_frames\[2\]\.strength: is missing"),
            (lambda m: m["rendered_frames"][1].update(strength="high"), r"\[1\]\.strength: must be a finite number"),
            (lambda m: m["rendered_frames"][1].update(frame=-1), r"\[1\]\.frame: must be a frame number ≥ 0"),
            (lambda m: m["rendered_frames"][0].update(deforum_prompt=3), r"deforum_prompt: must be the prompt text"),
            (lambda m: m.update(rendered_frames=[]), "is not a Parseq manifest"),
        ],
    )
    def test_bad_manifests_name_the_field(self, change, problem):
        manifest = parseq_manifest(4)
        change(manifest)
        with pytest.raises(InputError, match=problem):
            manifest, _ = load_manifest(manifest)
            parseq_series(manifest, frames=5, use_deltas=False)


class TestSources:
    def test_url_is_refused_unless_a_local_copy_is_named(self, tmp_path):
        url = "https://sd-parseq.web.app/api/manifest?docId=doc-9c4e5f0a"
        with pytest.raises(InputError, match=r"^parseq_manifest: is a URL: framefarm does not fetch manifests.*"
                                             r"Download the manifest"):
            import_deforum(deforum_settings(url, 12))
        copy = tmp_path / "song.json"
        copy.write_text(json.dumps(parseq_manifest(11)))
        result = import_deforum(deforum_settings(url, 12), parseq_manifest=copy)
        assert result.job["parseq"]["source"] == str(copy) and len(result.job["parseq"]["zoom"]) == 12

    def test_local_file_path(self, tmp_path):
        path = tmp_path / "m.json"
        path.write_text(json.dumps(parseq_manifest(11)))
        _, job = imported_job(str(path), 12)
        assert job.parseq.source == str(path) and job.parseq.strength[5] == pytest.approx(0.75)
        with pytest.raises(InputError, match=r"^parseq_manifest: is not a file"):
            imported_job(str(tmp_path / "missing.json"), 12)

    def test_report_lists_what_parseq_drives(self):
        result, _ = imported_job(parseq_manifest(11), 12)
        entries = {e.key: e for e in result.entries}
        assert entries["parseq_manifest"].status == "mapped"
        assert entries["parseq_manifest"].why.startswith("parseq: drives zoom (zoom_delta), angle (angle_delta)")
        for key in ("prompts", "positive_prompts", "negative_prompts", "seed_behavior", "cfg_scale_schedule"):
            assert entries[key].status == "ignored", key
        assert any(note.startswith("Parseq drives: zoom (zoom_delta)") for note in result.notes)
        assert any("subseed_strength, but the strength is 0 on every frame" in note for note in result.notes)

    def test_video_input_files_are_refused(self):
        with pytest.raises(InputError, match="framefarm reads Parseq manifests for 2D and 3D animations only"):
            import_deforum(deforum_settings(parseq_manifest(3), 4, animation_mode="Video Input",
                                            video_init_path="v.mp4"))


class TestJobTable:
    def test_toml_round_trip_with_one_row_of_frames_per_line(self, tmp_path):
        result, job = imported_job(parseq_manifest(11), 24)
        text = to_toml(dict(result.job, name="pq"))
        assert "zoom = [\n" in text and "],  # 10\n" not in text and "  # 20\n" in text
        (tmp_path / "pq.toml").write_text(text)
        assert tomllib.loads(text)["parseq"] == json.loads(json.dumps(result.job["parseq"]))
        assert load_job(tmp_path / "pq.toml") == job

    def test_manifest_path_relative_to_the_job_file(self, tmp_path):
        (tmp_path / "music").mkdir()
        (tmp_path / "music" / "song.json").write_text(json.dumps(parseq_manifest(11)))
        (tmp_path / "job.toml").write_text('kind = "deforum"\nframes = 16\n[seeds]\nbehavior = "schedule"\n'
                                           '[parseq]\nmanifest = "music/song.json"\nuse_deltas = false\n')
        job = load_job(tmp_path / "job.toml")
        assert job.parseq.manifest is None and job.parseq.source == str(tmp_path / "music" / "song.json")
        assert job.parseq.zoom[6] == pytest.approx(1.06) and job.parseq.zoom[15] == pytest.approx(1.0)
        rows = frame_table(job, range(2))
        assert rows[1]["seed"] == 1001 and rows[1]["prompt"] == "a neon city 2"

    def test_series_of_the_wrong_length_are_refused(self):
        with pytest.raises(InputError, match=r"parseq\.zoom: has 3 values but the job has 4 frames"):
            validate_job({"kind": "deforum", "name": "x", "frames": 4, "parseq": {"zoom": [1, 1, 1]}})

    def test_a_parseq_seed_needs_the_schedule_behaviour(self):
        with pytest.raises(InputError, match=r"seeds\.behavior: contradicts parseq\.seed"):
            validate_job({"kind": "deforum", "name": "x", "frames": 2, "parseq": {"seed": [1, 2]}})

    def test_manifest_and_series_together_are_refused(self, tmp_path):
        with pytest.raises(InputError, match="gives series next to a manifest"):
            validate_job({"kind": "deforum", "name": "x", "frames": 2,
                          "parseq": {"manifest": "m.json", "zoom": [1, 1]}})

    def test_a_changed_frame_re_renders_from_that_frame_only(self):
        from framefarm.animation.plan import plan_job

        _, job = imported_job(parseq_manifest(11), 12)
        strength = list(job.parseq.strength)
        strength[7] = 0.5
        changed = validate_job(dict(job.model_dump(), parseq=dict(job.parseq.model_dump(), strength=strength)))
        before, after = (plan_job(j, renderer="preview@1").frame_keys for j in (job, changed))
        assert [before[i] == after[i] for i in range(12)] == [True] * 7 + [False] * 5


def framefarm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "framefarm", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


class TestCommands:
    def test_import_render_and_plan_frames(self, tmp_path):
        manifest = parseq_manifest(11)
        (tmp_path / "s_settings.txt").write_text(json.dumps(deforum_settings(manifest, 14)))
        run = framefarm("import-deforum", "s_settings.txt", "--out", "pq.toml", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert "note: Parseq drives: zoom (zoom_delta)" in run.stderr

        run = framefarm("plan", "pq.toml", "--frames", "10:14", "--json", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        rows = json.loads(run.stdout)["frame_values"]
        frames = manifest["rendered_frames"]
        assert [row["frame"] for row in rows] == [10, 11, 12, 13]
        assert [row["translation_x"] for row in rows] == [frames[10]["translation_x_delta"]] + \
            [frames[11]["translation_x_delta"]] * 3
        assert [row["cfg_scale"] for row in rows] == [frames[10]["scale"]] + [frames[11]["scale"]] * 3
        assert [row["seed"] for row in rows] == [1010, 1011, 1011, 1011]
        assert rows[0]["prompt"] == "a forest at dusk" and rows[0]["negative_prompt"] == "blurry, text"

        run = framefarm("render", "pq.toml", "--out", "renders", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert len(list((tmp_path / "renders" / "pq" / "frames").glob("*.png"))) == 14


def test_the_importer_takes_a_local_copy_of_a_url_manifest(tmp_path):
    url = "https://sd-parseq.web.app/api/manifest?docId=doc-9c4e5f0a"
    (tmp_path / "u_settings.txt").write_text(json.dumps(deforum_settings(url, 12)))
    refused = framefarm("import-deforum", "u_settings.txt", "--out", "u.toml", cwd=tmp_path)
    assert refused.returncode == 2 and "--parseq-manifest PATH" in refused.stderr and not (tmp_path / "u.toml").exists()
    (tmp_path / "song.json").write_text(json.dumps(parseq_manifest(11)))
    run = framefarm("import-deforum", "u_settings.txt", "--out", "u.toml", "--parseq-manifest", "song.json",
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    job = load_job(tmp_path / "u.toml")
    assert job.parseq.source == "song.json" and len(job.parseq.zoom) == 12


def test_out_of_range_series_values_name_the_frame_and_the_fix():
    with pytest.raises(InputError, match=r"parseq\.strength: is 1\.2 at frame 1; it must be between 0 and 1.*"
                                         r"Change the field's curve in Parseq"):
        validate_job({"kind": "deforum", "name": "x", "frames": 3, "parseq": {"strength": [0.5, 1.2, 0.5]}})


def test_the_report_shows_parseq_prompts():
    from framefarm.report.collect import frame_prompts

    _, job = imported_job(parseq_manifest(11), 12)
    runs, notes = frame_prompts(job.model_dump(mode="json"), 12)
    assert notes == [] and runs[0][:3] == (0, 1, "a neon city 0") and runs[-1][:3] == (6, 12, "a forest at dusk")
