"""Import a Deforum settings file (the JSON the A1111 Deforum extension saves) as a framefarm job.

:func:`import_deforum` is pure: a settings dict in, a job dict and a report out. Every key of the file ends up in
the report as one of:

* ``mapped`` — read into the job (the report names the job field);
* ``ignored`` — not needed: UI state, a feature that is off in the file, Deforum bookkeeping, or an option with
  no effect in framefarm (the report says which);
* ``unsupported`` — a feature the file turns on that framefarm does not render: the render will differ there;
* ``refused`` — a schedule that does not parse, imported without it because the caller asked for that
  (``invalid="skip"``). By default a bad schedule is an :class:`InputError` naming the key: Deforum reads some
  malformed schedules as 0 without a word (``"0: 0: (expr)"``), framefarm does not guess.

Settings that contradict each other (``W`` and ``width`` that differ, ``use_init`` without an image, hybrid video
without a video, …) are always an :class:`InputError`. Deforum's own quirks are read as their authors meant them:
prompts of a run-saved file already hold the global positive/negative prompts (Deforum merges them in and saves
the result, and would merge them again on re-run): they are taken back out, so they are applied once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from framefarm.animation.deforum_parseq import import_parseq
from framefarm.animation.job_toml import to_toml  # re-exported: the CLI writes the imported job with it
from framefarm.animation.keyframes import parse_schedule, parse_string_schedule
from framefarm.animation.parseq import ParseqSeries
from framefarm.animation.prompts import NEG_MARKER, prompts_for_frames
from framefarm.errors import InputError

__all__ = [
    "ImportResult", "ReportEntry", "import_deforum", "read_settings", "report_header", "to_toml",
    "unmerge_global_prompts",
]

Status = Literal["mapped", "ignored", "unsupported", "refused"]
_MISSING = object()
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_CN_KEY = re.compile(r"^cn_(\d+)_(.+)$")
MAX_FRAMES = 1_000_000  # the job spec's limit: checked first, so a huge max_frames never allocates anything


@dataclasses.dataclass(frozen=True)
class ReportEntry:
    """What happened to one key of the settings file.

    Attributes:
        key: the Deforum key.
        status: ``mapped``, ``ignored``, ``unsupported`` or ``refused``.
        why: for ``mapped`` the job field it went to; otherwise the reason, in a sentence.
    """

    key: str
    status: Status
    why: str


@dataclasses.dataclass(frozen=True)
class ImportResult:
    """The imported job (a plain dict, as a job file holds it) and what happened to every key."""

    job: dict[str, Any]
    entries: tuple[ReportEntry, ...]
    notes: tuple[str, ...]

    def with_status(self, status: Status) -> list[ReportEntry]:
        return [entry for entry in self.entries if entry.status == status]

    def summary(self) -> str:
        counts = {s: len(self.with_status(s)) for s in ("mapped", "ignored", "unsupported", "refused")}
        return (f"{len(self.entries)} keys: {counts['mapped']} mapped, {counts['ignored']} ignored, "
                f"{counts['unsupported']} unsupported, {counts['refused']} refused")

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "notes": list(self.notes), "entries": [dataclasses.asdict(e) for e in self.entries]}


# ----- Reading ------------------------------------------------------------------------------------------------------


def read_settings(path: str | Path) -> dict[str, Any]:
    """Read a Deforum settings file (JSON; Deforum names them ``*_settings.txt``). Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("settings file", str(path), "no such file", "Pass the path of a Deforum *_settings.txt file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError("settings file", str(path), "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError("settings file", str(path), f"is not valid JSON: {exc}",
                         "Deforum settings files are JSON; fix the syntax at the position shown") from None
    if not isinstance(data, dict):
        raise InputError("settings file", str(path), "must hold a JSON object of settings at the top level")
    return data


# ----- Prompts ------------------------------------------------------------------------------------------------------


def _squash(text: str) -> str:
    return " ".join(text.split())


def unmerge_global_prompts(
    prompts: Mapping[str, str], positive: str, negative: str, *, frames: int
) -> tuple[dict[str, str], bool]:
    """Take Deforum's global prompts back out of prompts that already hold them.

    A Deforum run rewrites every prompt as ``f"{positive} {prompt} --neg {negative}"`` and saves that into the
    settings file next to the globals, so a re-run (or a naive import) applies them twice. When *every* prompt
    starts with the global positive and ends its negative part with the global negative, they are removed from
    the prompts, and only if the result renders the same words (whitespace aside) with the globals applied once.

    Returns:
        ``(prompts, unmerged)``: the prompts to use with the globals, and whether anything was taken out.
    """
    pos, neg = positive.strip(), negative.replace(NEG_MARKER, "").strip()
    if not (pos or neg) or not prompts:
        return dict(prompts), False
    out: dict[str, str] = {}
    for key, text in prompts.items():
        head, *tails = text.split(NEG_MARKER)
        head, tail = head.strip(), NEG_MARKER.join(tails).strip()
        if pos:
            if not head.startswith(pos):
                return dict(prompts), False
            head = head[len(pos):].strip()
        if neg:
            if not tails or not tail.endswith(neg):
                return dict(prompts), False
            tail = tail[: len(tail) - len(neg)].strip()
        out[key] = f"{head} {NEG_MARKER} {tail}" if tail else head
    try:  # the words each frame gets must not change, only how often the globals appear
        before = prompts_for_frames(prompts, frames=frames)
        after = prompts_for_frames(out, frames=frames, positive=positive, negative=negative)
    except InputError:
        return dict(prompts), False
    same = all(_squash(a.positive) == _squash(b.positive) and _squash(a.negative) == _squash(b.negative)
               for a, b in zip(before, after, strict=True))
    return (out, True) if same else (dict(prompts), False)


# ----- The importer -------------------------------------------------------------------------------------------------


def _as_float(key: str, value: Any, what: str) -> float:
    """A setting given as a number or a numeric string, read as a float; anything else "must be" ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(key, value, f"must be {what}")
    try:
        return float(value)
    except ValueError:
        raise InputError(key, value, f"must be {what}") from None


class _Importer:
    """Consumes the settings key by key; whatever is left at the end is reported as unknown."""

    def __init__(self, settings: Mapping[str, Any], *, invalid: Literal["error", "skip"], source: str) -> None:
        self.remaining = dict(settings)
        self.entries: list[ReportEntry] = []
        self.notes: list[str] = []
        self.problems: list[InputError] = []
        self.invalid = invalid
        self.source = source
        self.job: dict[str, Any] = {}
        self.frames = 1
        self.seed = 0
        self.parseq: ParseqSeries | None = None

    # --- bookkeeping

    def has(self, key: str) -> bool:
        return key in self.remaining

    def peek(self, key: str, default: Any = _MISSING) -> Any:
        return self.remaining.get(key, default)

    def _record(self, key: str, status: Status, why: str) -> None:
        if key in self.remaining:
            del self.remaining[key]
            self.entries.append(ReportEntry(key, status, why))

    def mapped(self, key: str, target: str) -> None:
        self._record(key, "mapped", target)

    def ignored(self, why: str, *keys: str) -> None:
        for key in keys:
            self._record(key, "ignored", why)

    def unsupported(self, key: str, why: str) -> None:
        self._record(key, "unsupported", why)

    def set(self, path: str, value: Any) -> None:
        node = self.job
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    # --- typed reads: each names the key in its error

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.peek(key, default)
        if not isinstance(value, bool):
            raise InputError(key, value, "must be true or false")
        return value

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        value = self.peek(key, default)
        if value is _MISSING:
            raise InputError(key, problem="is missing", fix=f"Add {key} to the settings file")
        number = _as_float(key, value, "a whole number")
        if not math.isfinite(number) or number != int(number):
            raise InputError(key, value, "must be a whole number")
        if minimum is not None and number < minimum:
            raise InputError(key, value, f"must be ≥ {minimum}")
        if maximum is not None and number > maximum:
            raise InputError(key, value, f"must be ≤ {maximum:,}")
        return int(number)

    def number(self, key: str, default: Any = _MISSING) -> float:
        value = self.peek(key, default)
        number = _as_float(key, value, "a number")
        if not math.isfinite(number):
            raise InputError(key, value, "must be a finite number")
        return number

    def text(self, key: str, default: str = "") -> str:
        value = self.peek(key, default)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InputError(key, value, "must be text")
        return value

    def path(self, key: str) -> str:
        """A file path or URL; Deforum writes a missing one as "", "None" or null."""
        value = self.text(key).strip()
        return "" if value == "None" else value

    def choice(self, key: str, allowed: Mapping[str, Any] | Sequence[str], default: Any = _MISSING) -> Any:
        value = self.peek(key, default)
        if value is _MISSING:
            raise InputError(key, problem="is missing")
        table = allowed if isinstance(allowed, Mapping) else {a: a for a in allowed}
        if not isinstance(value, str) or value not in table:
            raise InputError(key, value, "is not a value Deforum uses here",
                             f"Use one of: {', '.join(map(str, table))}")
        return table[value]

    # --- schedules

    def _schedule_text(self, key: str) -> str:
        value = self.peek(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"0:({value})"  # a plain number where a schedule belongs: a constant schedule
        if not isinstance(value, str):
            raise InputError(key, value, "must be a schedule string", 'Example: "0:(1.0)"')
        return value

    def _bad_schedule(self, key: str, error: InputError) -> None:
        if self.invalid == "skip":
            self._record(key, "refused", f"{error.problem}; left out, so the job's default is used")
        else:
            self.problems.append(error)
            self._record(key, "refused", error.problem)

    def checked_schedule(self, key: str, *, strings: bool = False) -> str | None:
        """The schedule's text if it parses for this job (frames, seed); else the key is recorded as refused."""
        if not self.has(key):
            return None
        try:
            text = self._schedule_text(key)
            if strings:
                parse_string_schedule(text, frames=self.frames, field=key)
            else:
                parse_schedule(text, frames=self.frames, field=key, seed=self.seed)
        except InputError as error:
            self._bad_schedule(key, error)
            return None
        return text

    def schedule(self, key: str, target: str, *, strings: bool = False) -> str | None:
        """Check a schedule and map it to ``target``; a bad one is a problem, named by its key."""
        text = self.checked_schedule(key, strings=strings)
        if text is not None:
            self.set(target, text)
            self.mapped(key, target)
        return text

    def constant(self, key: str) -> float | None:
        """The value of a schedule that is the same on every frame, else None (errors are left to ``schedule``)."""
        try:
            values = parse_schedule(self._schedule_text(key), frames=self.frames, field=key, seed=self.seed)
        except InputError:
            return None
        return float(values[0]) if (values == values[0]).all() else None


# ----- The steps of an import, in order ------------------------------------------------------------------------------


def _basics(imp: _Importer, name: str | None, seed: int | None) -> None:
    imp.frames = imp.integer("max_frames", minimum=1, maximum=MAX_FRAMES)
    imp.set("frames", imp.frames)
    imp.mapped("max_frames", "frames")

    for short, long, field in (("W", "width", "width"), ("H", "height", "height")):
        values = {k: imp.integer(k) for k in (short, long) if imp.has(k)}
        if len(set(values.values())) > 1:
            raise InputError(f"{short}/{long}", values, "contradict each other (two different frame sizes)",
                             f"Keep one of {short} and {long}")
        if values:
            imp.set(field, next(iter(values.values())))
            for key in values:
                imp.mapped(key, field)
    if imp.has("fps"):
        fps = imp.number("fps")
        imp.set("fps", int(fps) if fps == int(fps) else fps)
        imp.mapped("fps", "fps")

    file_seed = imp.integer("seed", -1)
    if seed is not None:
        imp.seed = seed
        if file_seed == -1:
            imp.notes.append(f"seed: the file asks for a random seed per run (-1); the job uses {seed}, so it is "
                             "reproducible")
        elif file_seed != seed:
            imp.notes.append(f"seed: the file says {file_seed}; {seed} was used as asked")
    elif file_seed == -1:
        raise InputError("seed", -1, "is -1 (a random seed per run), so the job would not be reproducible",
                         "Pass the seed to use (framefarm import-deforum --seed 1234); the CLI picks one if you don't")
    else:
        imp.seed = file_seed
    if not 0 <= imp.seed < 2**32:
        raise InputError("seed", imp.seed, f"is outside 0 … {2**32 - 1}")
    imp.set("seed", imp.seed)
    imp.mapped("seed", "seed")

    if name is not None:
        imp.set("name", name)
        imp.ignored("the job is named explicitly", "batch_name")
    else:
        batch = imp.text("batch_name").strip()
        if _JOB_NAME.fullmatch(batch):
            imp.set("name", batch)
            imp.mapped("batch_name", "name")
        else:
            imp.ignored("not a usable job name (placeholders or unsafe characters): the job file's name is used",
                        "batch_name")


def _mode(imp: _Importer) -> str:
    mode = imp.choice("animation_mode", ["2D", "3D", "Video Input", "Interpolation", "None"], "2D")
    if mode == "None":
        raise InputError("animation_mode", "None",
                         "renders separate still images, not an animation: framefarm has no equivalent",
                         'Set "animation_mode" to "2D" with a still camera to render the prompts as frames')
    if mode in ("2D", "3D"):
        imp.set("kind", "deforum")
        imp.set("animation_mode", mode)
        imp.mapped("animation_mode", "kind = deforum, animation_mode")
    elif mode == "Video Input":
        imp.set("kind", "video2video")
        imp.mapped("animation_mode", "kind = video2video")
    else:  # Interpolation: every frame from noise with its own prompt, no camera
        imp.set("kind", "deforum")
        imp.set("animation_mode", "2D")
        imp.set("motion.strength", "0:(0)")
        imp.mapped("animation_mode", "kind = deforum (2D, still camera, motion.strength = 0)")
        imp.notes.append("animation_mode Interpolation: imported as a 2D Deforum job with a still camera and "
                         "strength 0, so every frame is drawn from noise with its own prompt; Deforum's blending of "
                         "prompt embeddings between keys is not done (prompts switch at their keys)")
    return mode


def _prompts(imp: _Importer) -> None:
    if imp.parseq is not None and imp.parseq.prompts is not None:
        return  # Parseq gives every frame's prompt; the settings' prompt keys are reported as ignored
    raw = imp.peek("prompts", _MISSING)
    if raw is _MISSING:
        raise InputError("prompts", problem="is missing", fix='Add "prompts": {"0": "a prompt"}')
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError("prompts", raw, f"is not a JSON object of prompts: {exc}") from None
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, str) for v in raw.values()):
        raise InputError("prompts", raw, "must map frames to prompt texts", 'Example: {"0": "a cat", "30": "a dog"}')
    prompts = {str(k): v for k, v in raw.items()}
    globals_: dict[str, str] = {}
    for field, keys in (("positive_prompt", ("positive_prompts", "animation_prompts_positive")),
                        ("negative_prompt", ("negative_prompts", "animation_prompts_negative"))):
        given = {k: imp.text(k) for k in keys if imp.has(k)}
        distinct = {v.strip() for v in given.values() if v.strip()}
        if len(distinct) > 1:
            raise InputError("/".join(keys), given, "contradict each other (two different global prompts)",
                             f"Keep one of {' and '.join(keys)}")
        globals_[field] = next(iter(distinct), "")
        for key in given:
            imp.mapped(key, field)
    # Check keys, texts and backtick math once, as written (errors name the prompt key).
    prompts_for_frames(prompts, frames=imp.frames, positive=globals_["positive_prompt"],
                       negative=globals_["negative_prompt"])
    prompts, unmerged = unmerge_global_prompts(prompts, globals_["positive_prompt"], globals_["negative_prompt"],
                                               frames=imp.frames)
    if unmerged:
        imp.notes.append("prompts already held the global positive/negative prompts (a settings file saved by a "
                         "Deforum run); they were taken out of each prompt so they are applied once")
    imp.set("prompts", prompts)
    for field, text in globals_.items():
        if text:
            imp.set(field, text)
    imp.mapped("prompts", "prompts")


def _model(imp: _Importer, kind: str) -> None:
    if imp.has("sampler"):
        imp.set("model.sampler", imp.text("sampler"))
        imp.mapped("sampler", "model.sampler")
    scheduler = imp.text("scheduler").strip()
    sampler = str(imp.job.get("model", {}).get("sampler", ""))
    if not scheduler or scheduler == "Automatic" or sampler.lower().endswith(scheduler.lower()):
        imp.ignored("the sampler name already carries its noise schedule (A1111 ≥ 1.9 stores it apart)", "scheduler")
    else:
        imp.unsupported("scheduler", f"noise schedule {scheduler!r} separate from the sampler: write it into the "
                                     f"sampler name instead (e.g. '{sampler} {scheduler.capitalize()}')")
    imp.ignored("another tool's name for the sampler; 'sampler' is used", "sampler_name")
    if imp.has("steps"):
        imp.set("model.steps", imp.integer("steps", minimum=1))
        imp.mapped("steps", "model.steps")
    checkpoint = imp.path("sd_model_name")
    if checkpoint:
        if "\\" in checkpoint:
            imp.notes.append(f"sd_model_name {checkpoint!r}: Windows separators written as '/'")
            checkpoint = checkpoint.replace("\\", "/")
        imp.set("model.checkpoint", checkpoint)
        imp.mapped("sd_model_name", "model.checkpoint")
    imp.ignored("framefarm hashes model files itself", "sd_model_hash")
    commit = imp.text("deforum_git_commit_id")
    if commit:
        imp.notes.append(f"written by Deforum commit {commit}")
    imp.ignored("the Deforum version that wrote the file (noted)", "deforum_git_commit_id")

    # Schedules of the diffusion itself: every kind.
    if "strength" in imp.job.get("motion", {}):
        imp.ignored("Interpolation mode draws every frame from noise (strength 0)", "strength_schedule")
    else:
        imp.schedule("strength_schedule", "motion.strength")
    imp.schedule("cfg_scale_schedule", "motion.cfg_scale")
    for flag, key, target, strings in (
        ("enable_steps_scheduling", "steps_schedule", "motion.steps", False),
        ("enable_clipskip_scheduling", "clipskip_schedule", "motion.clip_skip", False),
        ("enable_sampler_scheduling", "sampler_schedule", "sampler_schedule", True),
        ("enable_checkpoint_scheduling", "checkpoint_schedule", "checkpoint_schedule", True),
    ):
        if imp.boolean(flag):
            if strings and kind != "deforum":
                imp.unsupported(key, "string schedules are a Deforum-job feature; the model table's value is used")
                imp.ignored(f"{key} is not imported", flag)
                continue
            imp.mapped(flag, target)
            imp.schedule(key, target, strings=strings)
        else:
            imp.ignored(f"{flag} is off in the file", flag, key)
    for flag, keys, what in (
        ("enable_subseed_scheduling", ("subseed_schedule", "subseed_strength_schedule"), "subseed variation"),
        ("enable_noise_multiplier_scheduling", ("noise_multiplier_schedule",), "A1111's img2img noise multiplier"),
        ("enable_ddim_eta_scheduling", ("ddim_eta_schedule",), "DDIM eta"),
        ("enable_ancestral_eta_scheduling", ("ancestral_eta_schedule",), "ancestral sampler eta"),
    ):
        if imp.boolean(flag):
            imp.unsupported(flag, f"{what} scheduling is not rendered by framefarm")
            imp.ignored(f"{flag} is not supported", *keys)
        else:
            imp.ignored(f"{flag} is off in the file", flag, *keys)
    imp.ignored("only InstructPix2Pix checkpoints read it", "pix2pix_img_cfg_scale_schedule")
    for key, what in (("restore_faces", "face restoration"), ("tiling", "tiling")):
        if imp.boolean(key):
            imp.unsupported(key, f"{what} is not rendered by framefarm")
        else:
            imp.ignored("off in the file", key)
    if imp.integer("seed_resize_from_w", 0) or imp.integer("seed_resize_from_h", 0):
        for key in ("seed_resize_from_w", "seed_resize_from_h"):
            imp.unsupported(key, "A1111's seed resize (noise drawn at another size) is not done")
    else:
        imp.ignored("seed resize is off (0)", "seed_resize_from_w", "seed_resize_from_h")


def _seeds(imp: _Importer) -> None:
    if imp.parseq is not None:
        # With a manifest Deforum reads every frame's seed from the seed schedule, whatever seed_behavior says:
        # Parseq's seed series when the manifest has one, else the settings' seed_schedule.
        imp.set("seeds.behavior", "schedule")
        imp.ignored("with a Parseq manifest Deforum takes every frame's seed from the seed schedule (seeds.behavior "
                    "= schedule)", "seed_behavior", "seed_iter_N")
        if "seed" not in imp.parseq.read_from:
            imp.schedule("seed_schedule", "seeds.schedule")
        return
    behavior = imp.choice("seed_behavior", ["iter", "fixed", "random", "ladder", "alternate", "schedule"], "iter")
    imp.set("seeds.behavior", behavior)
    imp.mapped("seed_behavior", "seeds.behavior")
    if behavior == "iter":
        imp.set("seeds.iter_n", imp.integer("seed_iter_N", 1, minimum=1))
        imp.mapped("seed_iter_N", "seeds.iter_n")
    else:
        imp.ignored(f"only seed_behavior iter reads it (this file: {behavior})", "seed_iter_N")
    if behavior == "schedule":
        imp.schedule("seed_schedule", "seeds.schedule")
    else:
        imp.ignored(f"only seed_behavior schedule reads it (this file: {behavior})", "seed_schedule")


def _camera(imp: _Importer, mode: str) -> None:
    moving = mode in ("2D", "3D")
    if not moving:
        why = f"{mode} mode does not move the camera"
        imp.ignored(why, "angle", "zoom", "translation_x", "translation_y", "translation_z", "transform_center_x",
                    "transform_center_y", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "fov_schedule",
                    "near_schedule", "far_schedule", "aspect_ratio_schedule", "aspect_ratio_use_old_formula",
                    "enable_perspective_flip", "perspective_flip_theta", "perspective_flip_phi",
                    "perspective_flip_gamma", "perspective_flip_fv", "border", "padding_mode", "sampling_mode",
                    "use_depth_warping", "depth_algorithm", "midas_weight")
        return
    imp.set("motion.border", imp.choice("border", ["replicate", "wrap"], "replicate"))
    imp.mapped("border", "motion.border")
    for key in ("translation_x", "translation_y"):
        imp.schedule(key, f"motion.{key}")
    two_d = ("angle", "zoom", "transform_center_x", "transform_center_y")
    three_d = ("translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z")
    lenses = (("fov_schedule", "fov"), ("near_schedule", "near"), ("far_schedule", "far"),
              ("aspect_ratio_schedule", "aspect_ratio"))
    if mode == "2D":
        for key in two_d:
            imp.schedule(key, f"motion.{key}")
        imp.ignored("3D mode only (this file is 2D)", *three_d, *(k for k, _ in lenses), "aspect_ratio_use_old_formula",
                    "padding_mode", "sampling_mode", "use_depth_warping", "depth_algorithm", "midas_weight")
    else:
        for key in three_d:
            imp.schedule(key, f"motion.{key}")
        if imp.boolean("aspect_ratio_use_old_formula"):
            width, height = imp.job.get("width", 512), imp.job.get("height", 512)
            imp.set("motion.aspect_ratio", f"0:({width / height!r})")
            imp.mapped("aspect_ratio_use_old_formula", "motion.aspect_ratio = width / height")
            imp.ignored("aspect_ratio_use_old_formula is on: the aspect ratio is width / height",
                        "aspect_ratio_schedule")
        else:
            imp.ignored("off: aspect_ratio_schedule is used", "aspect_ratio_use_old_formula")
        for key, field in lenses:
            imp.schedule(key, f"motion.{field}")
        imp.ignored("2D mode only (this file is 3D; Deforum ignores it too)", *two_d)
        imp.set("padding_mode", imp.choice("padding_mode", ["border", "reflection", "zeros"], "border"))
        imp.mapped("padding_mode", "padding_mode")
        imp.set("sampling_mode", imp.choice("sampling_mode", ["bicubic", "bilinear", "nearest"], "bicubic"))
        imp.mapped("sampling_mode", "sampling_mode")
        imp.set("depth.enabled", imp.boolean("use_depth_warping", True))
        imp.mapped("use_depth_warping", "depth.enabled")
        algorithms = ["Midas-3-Hybrid", "Midas-3.1-BeitLarge", "AdaBins", "Zoe", "Leres", "Depth-Anything-V2-Small",
                      "Midas+AdaBins (old)", "Zoe+AdaBins (old)"]
        imp.set("depth.algorithm", imp.choice("depth_algorithm", {a: a for a in algorithms}, "Midas-3-Hybrid"))
        imp.mapped("depth_algorithm", "depth.algorithm")
        weight = imp.number("midas_weight", 0.2)
        if not 0 <= weight <= 1:
            raise InputError("midas_weight", weight, "must be between 0 and 1")
        imp.set("depth.midas_weight", weight)
        imp.mapped("midas_weight", "depth.midas_weight")
    if imp.boolean("enable_perspective_flip"):
        imp.set("motion.perspective_flip.enabled", True)
        imp.mapped("enable_perspective_flip", "motion.perspective_flip.enabled")
        for part in ("theta", "phi", "gamma", "fv"):
            imp.schedule(f"perspective_flip_{part}", f"motion.perspective_flip.{part}")
        if mode == "2D":
            imp.notes.append("perspective flip: framefarm keeps the 2D translation, which Deforum drops while the "
                             "flip is on")
    else:
        imp.ignored("enable_perspective_flip is off in the file", "enable_perspective_flip", "perspective_flip_theta",
                    "perspective_flip_phi", "perspective_flip_gamma", "perspective_flip_fv")
    imp.ignored("framefarm does not write depth maps", "save_depth_maps")


def _image_ops(imp: _Importer, mode: str) -> None:
    keys = ("noise_schedule", "contrast_schedule", "amount_schedule", "kernel_schedule", "sigma_schedule",
            "threshold_schedule", "noise_type", "perlin_octaves", "perlin_persistence", "color_coherence",
            "color_coherence_image_path", "color_coherence_video_every_N_frames", "color_force_grayscale",
            "legacy_colormatch", "diffusion_cadence", "optical_flow_cadence", "cadence_flow_factor_schedule")
    if mode not in ("2D", "3D"):
        imp.ignored(f"{mode} mode does not carry the previous frame over (no noise, contrast, anti-blur, colour "
                    "matching or cadence)", *keys)
        return
    imp.schedule("noise_schedule", "motion.noise")
    imp.schedule("contrast_schedule", "motion.contrast")
    for part in ("amount", "kernel", "sigma", "threshold"):
        imp.schedule(f"{part}_schedule", f"motion.anti_blur.{part}")
    imp.set("noise_type", imp.choice("noise_type", ["uniform", "perlin"], "perlin"))
    imp.mapped("noise_type", "noise_type")
    if imp.job["noise_type"] == "perlin":
        octaves = imp.integer("perlin_octaves", 4)
        persistence = imp.number("perlin_persistence", 0.5)
        if not 1 <= octaves <= 7:
            raise InputError("perlin_octaves", octaves, "must be from 1 to 7")
        if not 0 <= persistence <= 1:
            raise InputError("perlin_persistence", persistence, "must be between 0 and 1")
        imp.set("perlin_octaves", octaves)
        imp.set("perlin_persistence", persistence)
        imp.mapped("perlin_octaves", "perlin_octaves")
        imp.mapped("perlin_persistence", "perlin_persistence")
    else:
        imp.ignored("noise_type is uniform", "perlin_octaves", "perlin_persistence")

    cadence = imp.integer("diffusion_cadence", 1, minimum=1)
    if cadence > 50:
        raise InputError("diffusion_cadence", cadence, "must be at most 50")
    imp.set("cadence", cadence)
    imp.mapped("diffusion_cadence", "cadence")
    flow = imp.choice("optical_flow_cadence", ["None", "RAFT", "DIS Medium", "DIS Fine", "Farneback"], "None")
    if flow != "None" and cadence > 1:
        imp.set("cadence_flow", flow)
        imp.mapped("optical_flow_cadence", "cadence_flow")
        imp.schedule("cadence_flow_factor_schedule", "cadence_flow_factor")
    else:
        why = "optical_flow_cadence is None" if flow == "None" else "cadence 1 has no in-between frames"
        imp.ignored(why, "optical_flow_cadence", "cadence_flow_factor_schedule")


def _color(imp: _Importer, hybrid_video: str) -> None:
    if not imp.has("color_coherence"):
        imp.ignored("color_coherence is absent: the job's default (LAB) applies", "color_coherence_image_path",
                    "color_coherence_video_every_N_frames", "color_force_grayscale", "legacy_colormatch")
        return
    legacy_names = {"Match Frame 0 LAB": "LAB", "Match Frame 0 HSV": "HSV", "Match Frame 0 RGB": "RGB"}
    value = imp.choice("color_coherence", ["None", "LAB", "HSV", "RGB", "Image", "Video Input", *legacy_names])
    if value in legacy_names:
        imp.notes.append(f"color_coherence {value!r} is an old Deforum name for {legacy_names[value]}")
        value = legacy_names[value]
    image = imp.path("color_coherence_image_path")
    if value == "Image":
        if not image:
            raise InputError("color_coherence/color_coherence_image_path", value,
                             "contradict each other: matching to an image needs color_coherence_image_path",
                             "Set color_coherence_image_path, or another color_coherence")
        imp.set("color_coherence", {"mode": "LAB", "reference": "image", "image": image})
        imp.mapped("color_coherence_image_path", "color_coherence.image")
    elif value == "Video Input":
        if hybrid_video:
            imp.set("color_coherence", {"mode": "LAB", "reference": "video", "video": hybrid_video,
                                        "video_every_n": imp.integer("color_coherence_video_every_N_frames", 1,
                                                                     minimum=1)})
            imp.mapped("color_coherence_video_every_N_frames", "color_coherence.video_every_n")
        else:
            imp.set("color_coherence", {"mode": "LAB"})
            imp.notes.append("color_coherence 'Video Input' without hybrid video: Deforum falls back to matching "
                             "the first frame in LAB, and so does the imported job")
    else:
        imp.set("color_coherence", {"mode": value})
    imp.mapped("color_coherence", "color_coherence")
    imp.ignored("not read by this color_coherence", "color_coherence_image_path",
                "color_coherence_video_every_N_frames")
    imp.job["color_coherence"]["force_grayscale"] = imp.boolean("color_force_grayscale")
    imp.mapped("color_force_grayscale", "color_coherence.force_grayscale")
    if imp.has("legacy_colormatch"):
        imp.job["color_coherence"]["legacy"] = imp.boolean("legacy_colormatch")
        imp.mapped("legacy_colormatch", "color_coherence.legacy")
    elif value != "None":
        imp.notes.append("legacy_colormatch is absent (an older file): the current default, matching after "
                         "diffusion, is used (Deforum would force the legacy mode); set color_coherence.legacy = "
                         "true for the old look")


_HYBRID_SCHEDULES = {
    "hybrid_comp_alpha_schedule": "comp_alpha",
    "hybrid_comp_mask_blend_alpha_schedule": "comp_mask_blend_alpha",
    "hybrid_comp_mask_contrast_schedule": "comp_mask_contrast",
    "hybrid_comp_mask_auto_contrast_cutoff_high_schedule": "comp_mask_auto_contrast_cutoff_high",
    "hybrid_comp_mask_auto_contrast_cutoff_low_schedule": "comp_mask_auto_contrast_cutoff_low",
    "hybrid_flow_factor_schedule": "flow_factor",
}
_HYBRID_CHOICES = {
    "hybrid_motion": ("motion", ["None", "Optical Flow", "Perspective", "Affine"]),
    "hybrid_composite": ("composite", ["None", "Normal", "Before Motion", "After Generation"]),
    "hybrid_flow_method": ("flow_method", ["RAFT", "DIS Medium", "DIS Fine", "Farneback"]),
    "hybrid_comp_mask_type": ("comp_mask_type", ["None", "Depth", "Video Depth", "Blend", "Difference"]),
    "hybrid_comp_mask_equalize": ("comp_mask_equalize", ["None", "Before", "After", "Both"]),
    "hybrid_generate_human_masks": ("generate_human_masks", ["None", "PNGs", "Video", "Both"]),
}
_HYBRID_FLAGS = {
    "hybrid_motion_use_prev_img": "motion_use_prev_img",
    "hybrid_flow_consistency": "flow_consistency",
    "hybrid_comp_mask_inverse": "comp_mask_inverse",
    "hybrid_comp_mask_auto_contrast": "comp_mask_auto_contrast",
    "hybrid_use_first_frame_as_init_image": "use_first_frame_as_init_image",
    "hybrid_use_init_image": "use_init_image",
    "hybrid_generate_inputframes": "generate_inputframes",
}


def _hybrid(imp: _Importer, mode: str) -> str:
    """Hybrid video; returns the hybrid video path when hybrid is on (for colour matching to it)."""
    keys = [*_HYBRID_SCHEDULES, *_HYBRID_CHOICES, *_HYBRID_FLAGS, "hybrid_consistency_blur",
            "hybrid_comp_save_extra_frames"]
    motion = imp.choice("hybrid_motion", _HYBRID_CHOICES["hybrid_motion"][1], "None")
    composite = imp.peek("hybrid_composite", "None")
    composite = "Normal" if composite is True else "None" if composite is False else composite  # old files: bool
    active = motion != "None" or composite != "None"
    if not active or mode not in ("2D", "3D"):
        why = "hybrid video is off in the file" if not active else f"{mode} mode has no hybrid video"
        if active:
            imp.unsupported("hybrid_motion", why)
            imp.unsupported("hybrid_composite", why)
        imp.ignored(why, *keys)
        return ""
    video = imp.path("video_init_path")
    if not video:
        raise InputError("hybrid_motion/hybrid_composite/video_init_path", {"hybrid_motion": motion,
                         "hybrid_composite": composite}, "contradict each other: hybrid video needs video_init_path",
                         "Set video_init_path, or turn hybrid_motion and hybrid_composite off")
    imp.set("hybrid.video", video)
    imp.mapped("video_init_path", "hybrid.video")
    if imp.has("hybrid_composite"):
        imp.remaining["hybrid_composite"] = composite
    for key, (field, allowed) in _HYBRID_CHOICES.items():
        if imp.has(key):
            imp.set(f"hybrid.{field}", imp.choice(key, allowed))
            imp.mapped(key, f"hybrid.{field}")
    for key, field in _HYBRID_FLAGS.items():
        if imp.has(key):
            imp.set(f"hybrid.{field}", imp.boolean(key))
            imp.mapped(key, f"hybrid.{field}")
    if imp.has("hybrid_consistency_blur"):
        imp.set("hybrid.consistency_blur", imp.integer("hybrid_consistency_blur", minimum=0))
        imp.mapped("hybrid_consistency_blur", "hybrid.consistency_blur")
    for key, field in _HYBRID_SCHEDULES.items():
        imp.schedule(key, f"hybrid.{field}")
    imp.ignored("Deforum's debug output", "hybrid_comp_save_extra_frames")
    return video


def _video(imp: _Importer, mode: str) -> None:
    if mode == "Video Input":
        video = imp.path("video_init_path")
        if not video:
            raise InputError("animation_mode/video_init_path", "Video Input",
                             "contradict each other: Video Input mode needs video_init_path",
                             "Set video_init_path to the source video")
        imp.set("source.video", video)
        imp.mapped("video_init_path", "source.video")
        imp.set("source.start_frame", imp.integer("extract_from_frame", 0, minimum=0))
        imp.mapped("extract_from_frame", "source.start_frame")
        if imp.integer("extract_nth_frame", 1, minimum=1) > 1:
            imp.unsupported("extract_nth_frame", "framefarm decodes the source at the job's fps; lower fps instead "
                                                 "of skipping frames")
        else:
            imp.ignored("every frame is used (1)", "extract_nth_frame")
        imp.ignored("the job renders max_frames frames from start_frame", "extract_to_frame")
        imp.notes.append("Video Input: the job renders max_frames frames of the video (Deforum counts the video's "
                         "frames instead)")
    else:
        imp.ignored(f"{mode} mode reads no video (hybrid video off)", "video_init_path", "extract_nth_frame",
                    "extract_from_frame", "extract_to_frame")
    imp.ignored("framefarm caches source frames by content", "overwrite_extracted_frames")


def _init(imp: _Importer) -> None:
    image = imp.path("init_image")
    if imp.boolean("use_init"):
        if not image:
            raise InputError("use_init/init_image", True, "contradict each other: use_init is on but init_image is "
                             "empty", "Set init_image, or turn use_init off")
        imp.set("init_image", image)
        imp.mapped("init_image", "init_image")
        imp.mapped("use_init", "init_image")
        imp.unsupported("strength", "the init image's own strength: frame 0 uses the strength schedule instead")
    else:
        imp.ignored("use_init is off in the file", "use_init", "init_image", "strength")
    imp.ignored("framefarm draws frame 0 from noise whenever there is no init image", "strength_0_no_init")
    if imp.boolean("use_looper"):
        imp.unsupported("use_looper", "Deforum's guided images (looper) are not rendered")
        imp.ignored("guided images are not supported", "init_images", "image_strength_schedule", "blendFactorMax",
                    "blendFactorSlope", "tweening_frames_schedule", "color_correction_factor")
    else:
        imp.ignored("guided images (use_looper) are off in the file", "use_looper", "init_images",
                    "image_strength_schedule", "blendFactorMax", "blendFactorSlope", "tweening_frames_schedule",
                    "color_correction_factor")


_MASK_KEYS = ("use_alpha_as_mask", "mask_file", "invert_mask", "mask_contrast_adjust", "mask_brightness_adjust",
              "overlay_mask", "mask_overlay_blur", "fill", "full_res_mask", "full_res_mask_padding", "mask_schedule",
              "noise_mask_schedule", "video_mask_path")


def _masks(imp: _Importer) -> None:
    on = [key for key in ("use_mask", "use_noise_mask", "use_mask_video") if imp.boolean(key)]
    for key in on:
        imp.unsupported(key, "masked rendering is not supported: the whole frame is rendered")
    imp.ignored("masks are off in the file" if not on else "masks are not supported", "use_mask", "use_noise_mask",
                "use_mask_video", *_MASK_KEYS)


def _finishing(imp: _Importer) -> None:
    enabled = {
        "make_gif": imp.boolean("make_gif"),
        "r_upscale_video": imp.boolean("r_upscale_video"),
        "frame_interpolation_engine": imp.text("frame_interpolation_engine", "None") not in ("None", ""),
        "add_soundtrack": imp.text("add_soundtrack", "None") not in ("None", ""),
    }
    for key, on in enabled.items():
        if on:
            imp.unsupported(key, "a finishing step: the import does not carry it over; set it in the job's [output] "
                                 "table")
    imp.ignored("finishing options (framefarm encodes with its [output] table)", "make_gif", "r_upscale_video",
                "frame_interpolation_engine", "add_soundtrack", "skip_video_creation", "delete_imgs",
                "delete_input_frames", "soundtrack_path", "r_upscale_factor", "r_upscale_model", "r_upscale_keep_imgs",
                "store_frames_in_ram", "frame_interpolation_x_amount", "frame_interpolation_slow_mo_enabled",
                "frame_interpolation_slow_mo_amount", "frame_interpolation_keep_imgs",
                "frame_interpolation_use_upscaled")


def _misc(imp: _Importer) -> None:
    redo = imp.text("optical_flow_redo_generation", "None")
    if redo not in ("None", ""):
        imp.unsupported("optical_flow_redo_generation", "Deforum's flow-guided re-generation is not done")
    dredo = imp.integer("diffusion_redo", 0, minimum=0)
    if dredo:
        imp.unsupported("diffusion_redo", "Deforum's diffusion redo is not done")
    imp.ignored("redo generation is off or not supported", "optical_flow_redo_generation",
                "redo_flow_factor_schedule", "diffusion_redo")
    imp.ignored("a UI option", "show_info_on_ui", "motion_preview_mode")
    imp.ignored("A1111's blank-frame handling (NSFW filter); framefarm renders without it", "reroll_blank_frames",
                "reroll_patience")
    imp.ignored("framefarm resumes from its own manifest", "resume_from_timestring", "resume_timestring")


_CN_IGNORED = {
    "low_vram": "a memory option", "pixel_perfect": "a preprocessor resolution option",
    "processor_res": "framefarm's preprocessors work at the frame size",
    "threshold_a": "preprocessor thresholds use framefarm's defaults",
    "threshold_b": "preprocessor thresholds use framefarm's defaults",
    "resize_mode": "control images are fitted to the frame",
    "overwrite_frames": "framefarm caches control inputs by content",
}


def _controlnet(imp: _Importer) -> None:
    units: dict[int, list[str]] = {}
    for key in list(imp.remaining):
        match = _CN_KEY.match(key)
        if match:
            units.setdefault(int(match.group(1)), []).append(key)
    out = []
    for number in sorted(units):
        prefix = f"cn_{number}_"
        keys = units[number]
        if not imp.boolean(prefix + "enabled"):
            imp.ignored(f"ControlNet unit {number} is off in the file", *keys)
            continue
        model = imp.path(prefix + "model")
        if not model:
            raise InputError(prefix + "model", imp.peek(prefix + "model"), "is empty but the unit is enabled")
        shown = re.sub(r"\s*\[[0-9a-fA-F]{6,}\]$", "", model)  # A1111 appends " [hash]"
        unit: dict[str, Any] = {"model": shown, "preprocessor": imp.text(prefix + "module", "none") or "none"}
        imp.mapped(prefix + "enabled", f"controlnet[{len(out)}]")
        imp.mapped(prefix + "model", f"controlnet[{len(out)}].model")
        imp.mapped(prefix + "module", f"controlnet[{len(out)}].preprocessor")
        weight_key = prefix + "weight"
        if imp.has(weight_key):
            constant = imp.constant(weight_key)
            if constant is not None:
                unit["weight"] = constant
                imp.mapped(weight_key, f"controlnet[{len(out)}].weight")
            else:
                text = imp.checked_schedule(weight_key)
                if text is not None:
                    unit["weight_schedule"] = text
                    imp.mapped(weight_key, f"controlnet[{len(out)}].weight_schedule")
        for part in ("guidance_start", "guidance_end"):
            key = prefix + part
            if imp.has(key):
                constant = imp.constant(key)
                if constant is None:
                    imp.unsupported(key, "framefarm's guidance start/end is one number per unit")
                else:
                    unit[part] = constant
                    imp.mapped(key, f"controlnet[{len(out)}].{part}")
        for part in ("vid_path", "mask_vid_path"):
            if imp.path(prefix + part):
                imp.unsupported(prefix + part, "per-unit control videos are not supported: the preprocessor runs "
                                               "on each rendered frame's input")
        if imp.text(prefix + "control_mode", "Balanced") != "Balanced":
            imp.unsupported(prefix + "control_mode", "only the Balanced control mode is rendered")
        if imp.boolean(prefix + "loopback_mode"):
            imp.unsupported(prefix + "loopback_mode", "loopback (the previous output as control input) is not done")
        for part, why in _CN_IGNORED.items():
            imp.ignored(why, prefix + part)
        imp.ignored("not needed", *(k for k in keys if k in imp.remaining))
        out.append(unit)
    if out:
        imp.set("controlnet", out)


_ORDER = ("kind", "name", "description", "width", "height", "fps", "frames", "seed", "animation_mode", "cadence",
          "cadence_flow", "cadence_flow_factor", "init_image", "positive_prompt", "negative_prompt", "noise_type",
          "perlin_octaves", "perlin_persistence", "padding_mode", "sampling_mode", "sampler_schedule",
          "checkpoint_schedule", "prompts", "model", "motion", "seeds", "depth", "color_coherence", "hybrid",
          "source", "controlnet", "parseq")


def import_deforum(
    settings: Mapping[str, Any],
    *,
    seed: int | None = None,
    name: str | None = None,
    invalid: Literal["error", "skip"] = "error",
    source: str = "settings",
    parseq_manifest: str | Path | None = None,
) -> ImportResult:
    """Map a Deforum settings dict onto a framefarm job dict.

    Args:
        settings: the parsed settings file (:func:`read_settings`).
        seed: the job seed. Required when the file's seed is -1 (random per run); overrides the file's seed.
        name: the job name; by default the file's ``batch_name`` when it is a valid name, else none (a job file
            is then named after itself).
        invalid: ``"error"`` (default): a schedule that does not parse is an :class:`InputError` naming its key.
            ``"skip"``: it is left out (the job's default is used) and reported as ``refused``.
        source: where the settings came from, for the job's description.
        parseq_manifest: a local copy of the file's Parseq manifest, read instead of its ``parseq_manifest``
            setting (which may then be a URL: framefarm never fetches one). A relative path is relative to the
            working directory, as a path in the setting itself is.

    Returns:
        :class:`ImportResult`: the job dict (validate it with ``framefarm.job.validate_job``) and the report.

    Raises:
        InputError: contradictory settings, values of the wrong type or outside Deforum's choices, settings
            framefarm cannot honour at all (``animation_mode`` None, a Parseq manifest at a URL with no local copy, or
            one that leaves frames without values), a seed of -1 with no
            ``seed`` given, or (with ``invalid="error"``) schedules that do not parse — every one of those listed.
    """
    if invalid not in ("error", "skip"):
        raise InputError("invalid", invalid, "must be error or skip")
    imp = _Importer(settings, invalid=invalid, source=source)
    _basics(imp, name, seed)
    mode = _mode(imp)
    imp.set("description", f"Imported from Deforum settings ({source}), animation_mode {mode}")
    imp.parseq = import_parseq(imp, mode, parseq_manifest)
    _prompts(imp)
    _model(imp, imp.job["kind"])
    _seeds(imp)
    _camera(imp, mode)
    _image_ops(imp, mode)
    hybrid_video = _hybrid(imp, mode)
    _color(imp, hybrid_video)
    _video(imp, mode)
    _init(imp)
    _masks(imp)
    _finishing(imp)
    _misc(imp)
    _controlnet(imp)
    for key in list(imp.remaining):
        imp._record(key, "ignored", "not a Deforum setting framefarm knows (a newer Deforum, or another tool's key)")

    if imp.problems:
        if len(imp.problems) == 1:
            error = imp.problems[0]
            raise InputError(error.field, error.value, error.problem,
                             f"{error.fix}. To import the rest of the file without it, pass --skip-invalid")
        lines = "\n  ".join(str(error) for error in imp.problems)
        raise InputError(source, problem=f"{len(imp.problems)} schedules do not parse:\n  {lines}",
                         fix="Fix them in the settings file, or pass --skip-invalid to import the rest without them")
    job = {key: imp.job[key] for key in _ORDER if key in imp.job}
    job.update({key: value for key, value in imp.job.items() if key not in job})
    return ImportResult(job=job, entries=tuple(imp.entries), notes=tuple(imp.notes))


def report_header(result: ImportResult, source: str) -> list[str]:
    """Comment lines for the top of an imported job file: where it came from, what did not come along, notes."""
    lines = [f"Imported from Deforum settings {source} by framefarm import-deforum: {result.summary()}."]
    for status, title in (("unsupported", "Turned on in the file but not rendered by framefarm:"),
                          ("refused", "Schedules that do not parse, left out (the job's defaults are used):")):
        entries = result.with_status(status)
        if entries:
            lines.append(title)
            lines.extend(f"  {e.key}: {e.why}" for e in entries)
    if result.notes:
        lines.append("Notes:")
        lines.extend(f"  {note}" for note in result.notes)
    return lines

