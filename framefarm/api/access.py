"""What an API client may make the server read, and where it may make it send: the operator decides.

A job file on the command line is the operator's own, so its paths go wherever the operator points them. A job
submitted over HTTP is not: its token grants rendering, not reading the server's disk. Without these checks a client
could name ``/home/me/.ssh/id_ed25519`` as a source video and download it as frames, probe which files exist from the
error messages, and send UDP to any host and port through the job's ``osc`` target.

So every path field of a submitted job must resolve, with ``~``, ``..`` and symlinks followed, inside a folder the
operator named with ``--media-root`` (none by default: then every path field is refused), and the job's ``osc``
target must be one the operator allowed with ``--osc-allow``. Relative paths start at the first media root.

The check runs on the validated job, before anything opens, hashes or stats the files it names, and an answer never
depends on whether a file outside the roots exists: a missing path resolves the same way as a present one.
File fields are rewritten to the resolved path they were checked as, so the render reads exactly what was allowed.
Model references are names in the models folder, already confined to it (``renderers/models/library.py``); only an
absolute one is a path here, and it must lie in a media root or the operator's own models folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from framefarm.api.osc import OscTarget
from framefarm.errors import InputError
from framefarm.job import AnyJob

# The operator's models folder, when the job does not name one (the same variable the model library reads).
MODELS_ENV = "FRAMEFARM_MODELS"


@dataclass(frozen=True)
class PathField:
    """One path a job names: its dotted field, the value as given, and whether it is a file or a model reference."""

    field: str
    value: str
    kind: Literal["file", "model"]


class PathsRefused(InputError):
    """Path fields outside the media roots; ``problems`` has one :class:`InputError` per field."""

    def __init__(self, problems: list[InputError]) -> None:
        first = problems[0]
        super().__init__(first.field, first.value, first.problem, first.fix)
        self.problems = tuple(problems)


@dataclass(frozen=True)
class MediaRoots:
    """The folders an API client's job may read from (``--media-root``); empty: it may read none.

    Attributes:
        roots: resolved folders; relative paths in a job start at the first.
    """

    roots: tuple[Path, ...] = ()

    @classmethod
    def from_folders(cls, folders: Iterable[str]) -> MediaRoots:
        """Resolve the operator's folders; each must exist (a typo must not silently refuse every job)."""
        roots = []
        for folder in folders:
            path = Path(folder).expanduser().resolve()
            if not path.is_dir():
                raise InputError("--media-root", folder, "is not a folder",
                                 "Name an existing folder the API's clients may read their media from")
            roots.append(path)
        return cls(tuple(dict.fromkeys(roots)))

    def resolve(self, value: str) -> Path | None:
        """``value`` resolved as a path (relative to the first root), or ``None`` when it cannot be."""
        try:
            path = Path(value.strip()).expanduser()
            if not path.is_absolute():
                if not self.roots:
                    return None
                path = self.roots[0] / path
            # strict=False: a missing file resolves lexically, so the answer is the same whether it exists or not.
            return path.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            return None

    def contains(self, path: Path) -> bool:
        return any(path.is_relative_to(root) for root in self.roots)

    def describe(self) -> str:
        return ", ".join(str(root) for root in self.roots)


def path_fields(job: AnyJob) -> list[PathField]:
    """Every path the job names, by field: files it reads and model references (see the module docstring)."""
    from framefarm.video.upscale import parse_upscale

    found: list[PathField] = []

    def add(field: str, value: str | None, kind: Literal["file", "model"] = "file") -> None:
        if value:
            found.append(PathField(field, value, kind))

    add("init_image", job.init_image)
    add("model.models_dir", job.model.models_dir)
    add("model.checkpoint", job.model.checkpoint, "model")
    add("model.vae", job.model.vae, "model")
    for index, unit in enumerate(job.controlnet):
        add(f"controlnet.{index}.model", unit.model, "model")
        add(f"controlnet.{index}.image", unit.image)
    add("output.audio", job.output.audio)
    upscale = parse_upscale(job.output.upscale, field="output.upscale", check_file=False)
    if upscale is not None and upscale.method == "model":
        add("output.upscale", job.output.upscale)
    add("output.interpolate_model", job.output.interpolate_model)
    source = getattr(job, "source", None)
    if source is not None and source.video != "testcard":  # the built-in test pattern is no file
        add("source.video", source.video)
    if job.kind == "deforum":
        for index, shot in enumerate(job.shots):
            add(f"shots.{index}.init_image", shot.init_image)
        add("color_coherence.image", job.color_coherence.image)
        add("color_coherence.video", job.color_coherence.video)
        add("hybrid.video", job.hybrid.video)
        if job.checkpoint_schedule:
            from framefarm.animation.keyframes import parse_string_schedule

            names = parse_string_schedule(job.checkpoint_schedule, frames=job.frames, field="checkpoint_schedule")
            for name in sorted(set(names)):
                add("checkpoint_schedule", name, "model")
    if job.kind == "animatediff":
        add("animatediff.motion_module", job.animatediff.motion_module, "model")
        for index, lora in enumerate(job.animatediff.motion_loras):
            add(f"animatediff.motion_loras.{index}.name", lora.name, "model")
    return found


def confine_read_at_validation(data: dict[str, Any], media: MediaRoots) -> dict[str, Any]:
    """The submitted job data with the paths that validation itself reads (a Deforum job's ``parseq.manifest``,
    read into per-frame series when the job is validated) resolved inside ``media``; :class:`PathsRefused` when one
    lies outside. Runs before validation, so no such file is opened unless it is allowed."""
    parseq = data.get("parseq")
    if not isinstance(parseq, dict) or not isinstance(parseq.get("manifest"), str):
        return data
    resolved: dict[str, str] = {}
    problem = _check_file(PathField("parseq.manifest", parseq["manifest"], "file"), media, resolved)
    if problem is not None:
        raise PathsRefused([problem])
    return {**data, "parseq": {**parseq, "manifest": resolved["parseq.manifest"]}}


def confine_job(job: AnyJob, media: MediaRoots) -> AnyJob:
    """``job`` with every file field resolved inside ``media``; :class:`PathsRefused` lists every field outside."""
    problems: list[InputError] = []
    resolved: dict[str, str] = {}
    for entry in path_fields(job):
        problem = _check_model(entry, media) if entry.kind == "model" else _check_file(entry, media, resolved)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise PathsRefused(problems)
    for field, path in resolved.items():
        job = _replace(job, field.split("."), path)
    return job


def _check_file(entry: PathField, media: MediaRoots, resolved: dict[str, str]) -> InputError | None:
    if not media.roots:
        return InputError(entry.field, entry.value, "names a file, and this API reads no files for its clients (it "
                          "was started without --media-root)", "Leave the field out, or ask the operator to restart "
                          "the API with --media-root FOLDER and put the file under FOLDER")
    path = media.resolve(entry.value)
    if path is None or not media.contains(path):
        return InputError(entry.field, entry.value, f"is outside the API's media roots ({media.describe()}) once "
                          "'..' and symlinks are resolved", "Put the file under a media root and name it there "
                          f"(relative paths start at {media.roots[0]})")
    resolved[entry.field] = str(path)
    return None


def _check_model(entry: PathField, media: MediaRoots) -> InputError | None:
    text = entry.value.strip().replace("\\", "/")
    if not Path(text).expanduser().is_absolute():
        return None  # a name in the models folder: the model library keeps it there
    models = os.environ.get(MODELS_ENV)
    allowed = MediaRoots.from_folders([models]).roots if models and Path(models).expanduser().is_dir() else ()
    within = MediaRoots(media.roots + allowed)
    path = within.resolve(text)
    if path is not None and within.contains(path):
        return None
    where = f"the API's media roots ({media.describe()})" if media.roots else "any media root (none is set)"
    return InputError(entry.field, entry.value, f"is an absolute path outside {where} and the operator's models "
                      "folder", "Name the model by its path inside the models folder (framefarm models lists them), "
                      "or put the file under a media root")


def _replace(model: Any, path: list[str], value: str) -> Any:
    """A copy of a frozen pydantic model (or tuple of them) with ``value`` at the dotted ``path``."""
    head, rest = path[0], path[1:]
    if isinstance(model, tuple):
        index = int(head)
        items = list(model)
        items[index] = _replace(items[index], rest, value) if rest else value
        return tuple(items)
    current = getattr(model, head)
    return model.model_copy(update={head: _replace(current, rest, value) if rest else value})


def check_osc(text: str, allowed: tuple[OscTarget, ...]) -> OscTarget:
    """The job's ``osc`` target, if the operator allowed it (``--osc-allow``); hosts are compared as written."""
    target = OscTarget.parse(text, field="osc")
    if any(target.host.lower() == a.host.lower() and target.port == a.port for a in allowed):
        return target
    if not allowed:
        raise InputError("osc", text, "is not allowed: this API was started without --osc-allow, so a job can't "
                         "name where its OSC message goes", "Leave osc out (the operator's --osc targets still get "
                         "every clip), or ask the operator to add --osc-allow HOST:PORT")
    raise InputError("osc", text, f"is not on the API's OSC allow-list ({', '.join(map(str, allowed))})",
                     "Use one of those exactly as written, or ask the operator to add --osc-allow HOST:PORT")
