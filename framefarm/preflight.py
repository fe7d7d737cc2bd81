"""Checks of a job's files that run before any Prefect start-up, so a typo costs a second, not a failed render.

Everything a render reads from disk is checked here: the source video or frame folder, init images, control and
colour-reference images, hybrid and colour-reference videos, the audio to mux, and (for a backend that loads
weights) the models the job names. Each problem is one :class:`~framefarm.errors.InputError` naming the field, the
value and the fix. The checks only look: no file is decoded and no model hashed, so they take milliseconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framefarm.errors import InputError

if TYPE_CHECKING:  # the type only: importing the job models at run time would pull in pydantic
    from framefarm.job.schema import AnyJob

TESTCARD = "testcard"
# ``org/name``: a Hugging Face hub id, loaded from the local hub cache by the diffusers backend, not a file here.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _readable(field: str, value: str, what: str, fix: str, *, folder_ok: bool = False) -> None:
    path = Path(value).expanduser()
    if folder_ok and path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError(field, value, "is a folder this user cannot read", "Fix its permissions")
        return
    if not path.exists():
        raise InputError(field, value, f"no such {what}", fix)
    if not path.is_file():
        raise InputError(field, value, f"is not a {what}", fix)
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise InputError(field, value, f"cannot be read ({exc.strerror or exc})",
                         "Fix its permissions, or give a copy this user can read") from None


def _file_fields(job: AnyJob) -> Iterator[tuple[str, str, str, str, bool]]:
    """``(field, value, what, fix, folder_ok)`` for every file path the job names."""
    image_fix = "Give the path of a PNG or JPEG"
    source = getattr(job, "source", None)
    if source is not None and source.video != TESTCARD:
        yield ("source.video", source.video, "file or folder",
               'Give a video file, a folder of frames, or "testcard"', True)
    if job.init_image:
        yield "init_image", job.init_image, "image file", image_fix, False
    for index, shot in enumerate(getattr(job, "shots", ())):
        if shot.init_image:
            yield f"shots.{index}.init_image", shot.init_image, "image file", image_fix, False
    for index, unit in enumerate(job.controlnet):
        if unit.image:
            yield f"controlnet.{index}.image", unit.image, "image file", image_fix, False
    coherence = getattr(job, "color_coherence", None)
    if coherence is not None:
        if coherence.image:
            yield "color_coherence.image", coherence.image, "image file", image_fix, False
        if coherence.video:
            yield "color_coherence.video", coherence.video, "video file", "Give the path of a video file", False
    hybrid = getattr(job, "hybrid", None)
    if hybrid is not None and hybrid.video:
        yield "hybrid.video", hybrid.video, "video file or folder", "Give a video file or a folder of frames", True
    if job.output.audio:
        yield "output.audio", job.output.audio, "audio file", "Give the path of a WAV, FLAC, MP3 or AAC file", False


def check_files(job: AnyJob) -> None:
    """Every file the job names exists and is readable."""
    for field, value, what, fix, folder_ok in _file_fields(job):
        _readable(field, value, what, fix, folder_ok=folder_ok)


def check_models(job: AnyJob, backend: str) -> None:
    """The models a weight-loading backend will load are in the models folder (found, not loaded or hashed)."""
    if backend == "preview":
        return  # the preview renders without weights, whatever the job names
    from framefarm.renderers.models.library import open_library

    refs = job.model
    if not refs.checkpoint:
        raise InputError("model.checkpoint", problem="is not set",
                         fix="Name an SD1.5 or SDXL checkpoint of the models folder, e.g. --set "
                             "model.checkpoint=dreamshaper_8 (framefarm models lists them)")
    absolute = Path(refs.checkpoint).expanduser()
    if absolute.is_absolute():
        _readable("model.checkpoint", refs.checkpoint, "model file or folder",
                  "Give the path of a .safetensors file or a diffusers folder", folder_ok=True)
        if not refs.models_dir and not os.environ.get("FRAMEFARM_MODELS"):
            return  # a checkpoint by path needs no models folder, unless other models are named
    library = open_library(refs.models_dir, allow_pickle=refs.allow_pickle)  # raises: no or no such folder
    if not absolute.is_absolute():
        try:
            library.find("checkpoint", refs.checkpoint, field="model.checkpoint")
        except InputError:
            if not HUB_ID.fullmatch(refs.checkpoint):
                raise
    if refs.vae:
        library.find("vae", refs.vae, field="model.vae")
    for index, unit in enumerate(job.controlnet):
        library.find("controlnet", unit.model, field=f"controlnet.{index}.model")
    motion = getattr(job, "animatediff", None)
    if motion is not None and motion.motion_module:
        library.find("motion_module", motion.motion_module, field="animatediff.motion_module")


def check_job(job: AnyJob, backend: str) -> None:
    """All checks before a render starts; raises the first problem as an :class:`InputError`."""
    check_files(job)
    check_models(job, backend)


def check_writable_folder(field: str, value: str, folder: str | Path) -> None:
    """``folder`` exists (made if missing) and a file can be created in it; else an InputError for ``field``.

    Tried by writing, not by ``os.access``: root passes every access check, a read-only mount or a full disk does
    not show in permission bits, and a path through a file fails only when something is created under it.
    """
    import tempfile

    fix = "Choose a folder this user can write to, or fix its permissions"
    folder = Path(folder).expanduser()
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                where = "is a file" if parent == Path(value).expanduser() else f"is under {str(parent)!r}, which is a file"
                raise InputError(field, value, f"{where}, not a folder", fix)
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".framefarm-write-check-"):
            pass
    except OSError as exc:
        raise InputError(field, value, f"cannot be written ({exc.strerror or exc})", fix) from None
