"""The Parseq step of a Deforum import: a settings file's ``parseq_manifest`` becomes the job's ``[parseq]`` table.

The manifest's per-frame series are written into the job (one array per field, :mod:`framefarm.animation.parseq`),
so the job renders exactly what Deforum would and needs no manifest file at render time. The settings keys a series
replaces are reported as ignored ("Parseq drives it"), so the report says field by field where each value comes
from. With a manifest, Deforum takes every frame's seed from the seed schedule whatever ``seed_behavior`` says (the
manifest's ``seed`` when it has one): the job's seed behaviour is ``schedule``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framefarm.animation.parseq import PARSEQ_FIELDS, ParseqSeries, load_manifest, parseq_series
from framefarm.errors import InputError

__all__ = ["PROMPT_KEYS", "import_parseq"]

# Settings keys that only shape the settings' own prompts: Parseq's deforum_prompt replaces them all.
PROMPT_KEYS = ("prompts", "positive_prompts", "negative_prompts", "animation_prompts_positive",
               "animation_prompts_negative")
_FLIP_FIELDS = ("perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma", "perspective_flip_fv")
_ONLY_3D = ("translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "fov", "near", "far")
_ONLY_2D = ("zoom", "angle")


def _drives(series: ParseqSeries) -> list[str]:
    return [f"{job_key} ({name})" if job_key != name else job_key for job_key, name in series.read_from.items()]


def import_parseq(imp: Any, mode: str, local_copy: str | Path | None) -> ParseqSeries | None:
    """Read the settings' Parseq manifest into ``imp``'s job and report; ``None`` when the file has none.

    Args:
        imp: the importer (``deforum_import._Importer``): settings left to read, job, report.
        mode: the file's ``animation_mode``.
        local_copy: a downloaded copy of the manifest, read instead of the setting (needed when it is a URL).

    Raises:
        InputError: a manifest in a mode framefarm has no Parseq job for, or one :func:`load_manifest` or
            :func:`parseq_series` refuses (a URL without a local copy, frames no entry sets, …).
    """
    # 1. Is there a manifest?
    setting = imp.path("parseq_manifest")
    if not setting and local_copy is None:
        imp.ignored("no Parseq manifest in the file", "parseq_manifest", "parseq_use_deltas",
                    "parseq_non_schedule_overrides")
        return None
    if mode not in ("2D", "3D"):
        raise InputError("parseq_manifest", setting[:60] or str(local_copy),
                         f"is set in a {mode} file: framefarm reads Parseq manifests for 2D and 3D animations only",
                         'Set "animation_mode" to "2D" or "3D", or clear parseq_manifest')

    # 2. Read it and take the series, by Deforum's rules.
    use_deltas = imp.boolean("parseq_use_deltas", True)
    manifest, source = load_manifest(setting, field="parseq_manifest", local_copy=local_copy)
    series = parseq_series(manifest, frames=imp.frames, use_deltas=use_deltas, fps=imp.job.get("fps"))
    record = f"inline in {imp.source}" if source == "inline" else source
    imp.set("parseq", series.job_table(use_deltas=use_deltas, manifest=record))
    imp.mapped("parseq_manifest", f"parseq: drives {', '.join(_drives(series)) or 'nothing'}")
    imp.mapped("parseq_use_deltas", "parseq.use_deltas")
    imp.ignored("framefarm takes only per-frame values from Parseq", "parseq_non_schedule_overrides")

    # 3. The settings a series replaces: reported, not imported.
    for spec in PARSEQ_FIELDS:
        name = series.read_from.get(spec.job)
        if name is None:
            continue
        if spec.job == "prompts":
            imp.ignored("Parseq's deforum_prompt gives every frame's whole prompt (Deforum adds no global prompt "
                        "to it)", *PROMPT_KEYS)
        else:
            imp.ignored(f"Parseq drives it (manifest field {name})", spec.setting)
    imp.notes.append(f"Parseq drives: {', '.join(_drives(series)) or 'nothing Deforum reads'}; every other value "
                     "comes from the settings' schedules")

    # 4. What differs from the series' face value, said once.
    imp.notes.extend(series.notes)
    if series.unread:
        imp.notes.append(f"Parseq fields not read (Deforum's adapter does not read them either, or framefarm does not "
                         f"know them): {', '.join(series.unread)}")
    _note_subseed(imp, series)
    flips = [f for f in _FLIP_FIELDS if f in series.read_from]
    if flips and not imp.boolean("enable_perspective_flip"):
        imp.notes.append(f"Parseq drives {', '.join(flips)}, but enable_perspective_flip is off: as in Deforum, no "
                         "flip is applied")
    idle = [f for f in (_ONLY_3D if mode == "2D" else _ONLY_2D) if f in series.read_from]
    if idle:
        imp.notes.append(f"Parseq drives {', '.join(idle)}, which a {mode} animation does not use (nor does Deforum)")
    return series


def _note_subseed(imp: Any, series: ParseqSeries) -> None:
    strengths = series.values.get("subseed_strength")
    if strengths is None:
        return
    used = [frame for frame, value in enumerate(strengths) if value != 0]
    if used:
        imp.notes.append(f"Parseq drives subseed_strength (non-zero on {len(used)} frames, from frame {used[0]}): "
                         "framefarm renders no subseed variation, so those frames differ from Deforum's")
    else:
        imp.notes.append("Parseq drives subseed and subseed_strength, but the strength is 0 on every frame: no effect")
