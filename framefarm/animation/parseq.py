"""Parseq manifests: per-frame values for a Deforum job, read the way Deforum's Parseq adapter reads them.

Parseq (a keyframe sequencer many Deforum users key to music) renders its keyframes into a manifest: JSON whose
``rendered_frames`` list holds one object per frame, ``{"frame": 0, "zoom": 1.0, "zoom_delta": 1.0, …}``. Deforum
reads it as follows, and so does :func:`parseq_series` (reimplemented from that behaviour, not from its code):

* A field is driven by Parseq when the **first** entry of ``rendered_frames`` has it; a field the first entry lacks
  falls back to the settings' own schedule, even when later entries have it.
* Motion fields (zoom, angle, translation x/y/z, 3D rotation x/y/z, perspective flip θ/φ/γ) are read from their
  ``*_delta`` series when ``use_deltas`` is on: Deforum's camera moves are per frame, Parseq's plain values absolute.
* Each entry sets its own frame; entries past the job's last frame are ignored; a frame listed twice takes its
  last entry. From the last entry's frame on, every frame holds the last entry's values, so a manifest shorter than
  the job holds its end.
* ``deforum_prompt`` is the whole prompt, ``positive --neg negative``: Deforum adds no global prompt to it.

Where Deforum would misbehave, this module refuses instead: a frame of the job that no entry sets (Deforum renders
it with NaN values), a later entry missing a driven field (Deforum crashes), values that are not numbers. A URL is
never fetched: a manifest behind a URL can change between runs and farm machines have no network, so a local copy
must be named.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from framefarm.errors import InputError

__all__ = ["MOTION_FIELDS", "PARSEQ_FIELDS", "ParseqField", "ParseqSeries", "load_manifest", "parseq_series"]


@dataclasses.dataclass(frozen=True)
class ParseqField:
    """One Parseq field Deforum reads.

    Attributes:
        parseq: the field's name in the manifest (without ``_delta``).
        job: its key in a job's ``[parseq]`` table.
        value: the plan value it replaces (``"perspective_flip.theta"``); ``None`` for the prompt and the seed.
        setting: the Deforum settings key it overrides.
        motion: a per-frame camera move, read from ``*_delta`` when deltas are on.
    """

    parseq: str
    job: str
    value: str | None
    setting: str
    motion: bool = False


def _motion(name: str, value: str | None = None, setting: str | None = None) -> ParseqField:
    return ParseqField(name, name, value or name, setting or name, motion=True)


PARSEQ_FIELDS: tuple[ParseqField, ...] = (
    _motion("zoom"),
    _motion("angle"),
    _motion("translation_x"),
    _motion("translation_y"),
    _motion("translation_z"),
    _motion("rotation_3d_x"),
    _motion("rotation_3d_y"),
    _motion("rotation_3d_z"),
    _motion("perspective_flip_theta", "perspective_flip.theta"),
    _motion("perspective_flip_phi", "perspective_flip.phi"),
    _motion("perspective_flip_gamma", "perspective_flip.gamma"),
    ParseqField("perspective_flip_fv", "perspective_flip_fv", "perspective_flip.fv", "perspective_flip_fv"),
    ParseqField("noise", "noise", "noise", "noise_schedule"),
    ParseqField("strength", "strength", "strength", "strength_schedule"),
    ParseqField("contrast", "contrast", "contrast", "contrast_schedule"),
    ParseqField("scale", "cfg_scale", "cfg_scale", "cfg_scale_schedule"),
    ParseqField("fov", "fov", "fov", "fov_schedule"),
    ParseqField("near", "near", "near", "near_schedule"),
    ParseqField("far", "far", "far", "far_schedule"),
    ParseqField("antiblur_kernel", "anti_blur_kernel", "anti_blur.kernel", "kernel_schedule"),
    ParseqField("antiblur_sigma", "anti_blur_sigma", "anti_blur.sigma", "sigma_schedule"),
    ParseqField("antiblur_amount", "anti_blur_amount", "anti_blur.amount", "amount_schedule"),
    ParseqField("antiblur_threshold", "anti_blur_threshold", "anti_blur.threshold", "threshold_schedule"),
    ParseqField("seed", "seed", None, "seed_schedule"),
    # Read by Deforum (it turns subseed scheduling on); framefarm renders no subseed variation: reported only.
    ParseqField("subseed", "subseed", None, "subseed_schedule"),
    ParseqField("subseed_strength", "subseed_strength", None, "subseed_strength_schedule"),
    ParseqField("deforum_prompt", "prompts", None, "prompts"),
)
MOTION_FIELDS = frozenset(f.parseq for f in PARSEQ_FIELDS if f.motion)
_NOT_FIELDS = ("frame",)  # bookkeeping in every entry
_UNRENDERED = frozenset({"subseed", "subseed_strength"})


@dataclasses.dataclass(frozen=True)
class ParseqSeries:
    """What a manifest drives, frame by frame, for one job.

    Attributes:
        frames: frames in the job (every series has this length).
        values: job key (``"zoom"``, ``"cfg_scale"``, ``"seed"``, ``"subseed"``…) → one float per frame.
        prompts: one ``positive --neg negative`` text per frame, or ``None`` when the manifest has no prompts.
        read_from: job key → the manifest field it was read from (``"zoom_delta"``).
        unread: fields of the first entry Deforum's adapter does not read (or framefarm does not know).
        notes: what the report should say: duplicates, a manifest shorter or longer than the job, fps.
    """

    frames: int
    values: dict[str, tuple[float, ...]]
    prompts: tuple[str, ...] | None
    read_from: dict[str, str]
    unread: tuple[str, ...]
    notes: tuple[str, ...]

    def job_table(self, *, use_deltas: bool, manifest: str | None = None) -> dict[str, Any]:
        """The job's ``[parseq]`` table: ``use_deltas``, the manifest it came from, one array per driven field."""
        table: dict[str, Any] = {}
        if manifest is not None:
            table["source"] = manifest
        table["use_deltas"] = use_deltas
        for field in PARSEQ_FIELDS:
            if field.job in self.values and field.parseq not in _UNRENDERED:
                table[field.job] = [int(v) if field.job == "seed" else v for v in self.values[field.job]]
        if self.prompts is not None:
            table["prompts"] = list(self.prompts)
        return table


# ----- Reading a manifest -------------------------------------------------------------------------------------------


def _is_url(text: str) -> bool:
    # Deforum's rule: a value starting with "http" is fetched, anything else is parsed as JSON.
    return text.startswith("http")


def load_manifest(value: str | Mapping[str, Any], *, field: str = "parseq_manifest",
                  local_copy: str | Path | None = None, base_dir: str | Path | None = None) -> tuple[dict, str]:
    """The manifest a setting names: inline JSON, a local file, or (only with ``local_copy``) a URL.

    Args:
        value: the setting as written: a JSON text, a path, a URL, or an already parsed manifest.
        field: the setting's name, for errors.
        local_copy: a downloaded copy of the manifest to read instead of the setting (needed for a URL).
        base_dir: where a relative path is looked up (default: the working directory).

    Returns:
        ``(manifest, source)``: the parsed JSON object and where it came from (``"inline"`` or the file's path).

    Raises:
        InputError: a URL without a local copy, a missing or unreadable file, JSON that does not parse, or JSON that
            is not a Parseq manifest (no ``rendered_frames`` list).
    """
    if isinstance(value, Mapping):
        return _checked(dict(value), field, "inline"), "inline"
    if not isinstance(value, str) or not value.strip():
        raise InputError(field, value, "must be a Parseq manifest: inline JSON or the path of a .json file",
                         "Paste the manifest Parseq copies, or save it and give the file's path")
    text = value.strip()
    if local_copy is not None:
        return _read_file(Path(local_copy), field, base_dir), str(local_copy)
    if _is_url(text):
        raise InputError(field, text, "is a URL: framefarm does not fetch manifests (the page can change between "
                         "runs, and farm machines have no network)",
                         "Download the manifest (Parseq's 'Save' or the URL itself) and name the local copy: set "
                         f"{field} to its path, or pass it to framefarm import-deforum as --parseq-manifest PATH")
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(field, text[:60], f"is not valid JSON: {exc}",
                             "Paste the manifest exactly as Parseq copies it") from None
        return _checked(data, field, "inline"), "inline"
    return _read_file(Path(text), field, base_dir), text


def _read_file(path: Path, field: str, base_dir: str | Path | None) -> dict:
    full = path if path.is_absolute() or base_dir is None else Path(base_dir) / path
    try:
        found = full.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or one no file can have
        found = False
    if not found:
        raise InputError(field, str(path), f"is not a file ({full} does not exist)",
                         "Give the path of the manifest's .json file, or paste the JSON itself")
    try:
        data = json.loads(full.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(field, str(path), f"is not a JSON file: {exc}",
                         "Save the manifest from Parseq again") from None
    return _checked(data, field, str(path))


def _checked(data: Any, field: str, where: str) -> dict:
    frames = data.get("rendered_frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise InputError(field, where, "is not a Parseq manifest: it needs a non-empty 'rendered_frames' list",
                         "Use the manifest Parseq renders (Deforum integration → copy or save)")
    return data


# ----- Series, by the adapter's rules --------------------------------------------------------------------------------


def _frame_number(entry: Any, index: int, field: str) -> int:
    if not isinstance(entry, Mapping):
        raise InputError(f"{field}.rendered_frames[{index}]", entry, "must be an object of field values",
                         "Use the manifest Parseq renders, unedited")
    frame = entry.get("frame")
    if isinstance(frame, bool) or not isinstance(frame, (int, float)) or frame != int(frame) or frame < 0:
        raise InputError(f"{field}.rendered_frames[{index}].frame", frame, "must be a frame number ≥ 0",
                         "Every entry of rendered_frames names its frame: {\"frame\": 0, …}")
    return int(frame)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(where, value, "must be a finite number", "Check the field's curve in Parseq")
    return float(value)


def _frame_list(frames: Sequence[int]) -> str:
    shown = ", ".join(map(str, frames[:8]))
    return shown + (f" … ({len(frames)} frames)" if len(frames) > 8 else "")


def parseq_series(manifest: Mapping[str, Any], *, frames: int, use_deltas: bool, fps: float | None = None,
                  field: str = "parseq_manifest") -> ParseqSeries:
    """Per-frame values of every field the manifest drives, for a job of ``frames`` frames (rules: module doc).

    Args:
        manifest: the parsed manifest (:func:`load_manifest`).
        frames: frames in the job.
        use_deltas: read the camera moves from the ``*_delta`` fields (Deforum's ``parseq_use_deltas``).
        fps: the job's fps, to note a manifest rendered for another rate.
        field: the setting's name, for errors.

    Raises:
        InputError: an entry without a frame number, a driven field that is not a number (or text, for the
            prompt) or is missing from a later entry, or frames of the job no entry sets.
    """
    entries = list(manifest["rendered_frames"])
    numbers = [_frame_number(entry, i, field) for i, entry in enumerate(entries)]
    first = entries[0]
    notes: list[str] = []

    # 1. Which fields the manifest drives: those its first entry defines.
    read_from: dict[str, str] = {}
    for spec in PARSEQ_FIELDS:
        name = spec.parseq + ("_delta" if use_deltas and spec.motion else "")
        if name in first:
            read_from[spec.job] = name
    known = {spec.parseq for spec in PARSEQ_FIELDS}
    known |= {f"{name}_delta" for name in MOTION_FIELDS}
    unread = tuple(sorted(key for key in first if key not in known and key not in _NOT_FIELDS
                          and not key.endswith(("_delta", "_pc"))))

    # 2. Fill each frame from its entry; frames past the job are ignored; a repeated frame takes its last entry.
    repeated = sorted(n for n, count in Counter(n for n in numbers if n < frames).items() if count > 1)
    if repeated:
        notes.append(f"Parseq manifest: frame(s) {_frame_list(repeated)} are listed more than once; the last "
                     "entry of each is used, as in Deforum")
    last_frame = numbers[-1]
    values: dict[str, tuple[float, ...]] = {}
    prompts: tuple[str, ...] | None = None
    for job_key, name in read_from.items():
        is_prompt = job_key == "prompts"
        column: list[Any] = [None] * frames
        for index, (entry, number) in enumerate(zip(entries, numbers)):
            if number >= frames:
                continue  # past the job: never read (Deforum does not look at it either)
            where = f"{field}.rendered_frames[{index}].{name}"
            if name not in entry:
                raise InputError(where, problem=f"is missing (frame {number}); the first entry defines {name}, so "
                                 "every entry must", fix="Render the manifest again in Parseq")
            value = entry[name]
            if is_prompt and not isinstance(value, str):
                raise InputError(where, value, "must be the prompt text", 'Example: "a neon city --neg blurry"')
            column[number] = value if is_prompt else _number(value, where)
        # 3. From the last entry's frame on, hold its value (a manifest shorter than the job holds its end).
        for number in range(last_frame, frames):
            column[number] = entries[-1][name] if is_prompt else float(entries[-1][name])
        gaps = [i for i, v in enumerate(column) if v is None]
        if gaps:
            raise InputError(field, f"{len(entries)} entries", f"sets no value for frame(s) {_frame_list(gaps)} of "
                             f"the job (Deforum would render them with NaN values)",
                             "Render the manifest again in Parseq so rendered_frames lists every frame from 0")
        if is_prompt:
            prompts = tuple(column)
        else:
            values[job_key] = tuple(column)

    # 4. What the report says about length and rate.
    top = max(numbers)
    if top + 1 < frames:
        notes.append(f"Parseq manifest: frames 0–{top}; the job has {frames}, so frames {top + 1}–{frames - 1} "
                     f"hold the last entry's values (frame {last_frame}), as in Deforum")
    elif top + 1 > frames:
        notes.append(f"Parseq manifest: frames 0–{top}; the job has {frames}, so entries past frame {frames - 1} "
                     "are ignored, as in Deforum")
    manifest_fps = (manifest.get("options") or {}).get("output_fps") if isinstance(manifest.get("options"),
                                                                                     Mapping) else None
    if fps is not None and isinstance(manifest_fps, (int, float)) and not isinstance(manifest_fps, bool) \
            and float(manifest_fps) != float(fps):
        notes.append(f"Parseq manifest: rendered for {manifest_fps:g} fps, the job is {fps:g} fps; frames are "
                     "matched by number, so music-keyed motion drifts (set one rate in both)")
    return ParseqSeries(frames=frames, values=values, prompts=prompts, read_from=read_from, unread=unread,
                        notes=tuple(notes))

