"""The model library: a models folder laid out like an A1111 install (or holding diffusers folders), scanned.

Layout (folder names match case-insensitively; the ``models/`` level is optional, so both an A1111 install root and
its ``models`` folder work)::

    <root>/models/Stable-diffusion/   checkpoints: single files (.safetensors) or diffusers folders
    <root>/models/Lora/               LoRAs (also models/LyCORIS)
    <root>/models/ControlNet/         ControlNet models
    <root>/models/VAE/                VAEs
    <root>/models/AnimateDiff/        motion modules
    <root>/models/hypernetworks/      A1111 hypernetworks (.pt pickles: only with the opt-in)
    <root>/embeddings/                textual-inversion embeddings
    <root>/annotators/                ControlNet preprocessor weights (see framefarm.renderers.preprocessors)

Every file is classified from its own tensor names (:mod:`.detect`), so a LoRA dropped into the checkpoint folder is
still listed as a LoRA. Pickle files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) can run arbitrary code when loaded:
they are listed as ``refused`` and never opened unless the user opts in (``model.allow_pickle = true`` in the job,
``--allow-pickle`` on the command line), and even then only through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from framefarm.errors import InputError
from framefarm.renderers.models.detect import (
    ANY_BASE, SD15, SD2, SDXL, UNKNOWN, Detection, detect_weights,
)
from framefarm.renderers.models.safetensors_io import read_header

MODELS_ENV = "FRAMEFARM_MODELS"
SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
WEIGHT_SUFFIXES = SAFE_SUFFIXES + PICKLE_SUFFIXES

# Where each kind lives, relative to the root; the first existing folders win. Kept as data, in A1111's names.
KIND_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoint": ("models/Stable-diffusion", "Stable-diffusion", "checkpoints"),
    "lora": ("models/Lora", "Lora", "models/LyCORIS", "LyCORIS", "loras"),
    "controlnet": ("models/ControlNet", "ControlNet"),
    "vae": ("models/VAE", "VAE"),
    "motion_module": ("models/AnimateDiff", "AnimateDiff"),
    "hypernetwork": ("models/hypernetworks", "hypernetworks"),
    "embedding": ("embeddings", "models/embeddings"),
}
ANNOTATOR_FOLDERS = ("annotators", "models/annotators")

PICKLE_REASON = ("pickle file: loading it can run arbitrary code; convert it to .safetensors, or opt in with "
                 "--allow-pickle / model.allow_pickle = true (loaded with torch.load(weights_only=True))")


@dataclass(frozen=True)
class ModelEntry:
    """One file or diffusers folder in the library.

    Attributes:
        name: path relative to its kind folder, with the suffix (``"sub/dreamshaper_8.safetensors"``).
        path: absolute path.
        kind: detected kind (``checkpoint``, ``lora``, …) or the folder's kind when the file is not read.
        base: ``SD1.5``, ``SDXL``, ``SD1.5/SDXL`` (a VAE), an unsupported base, or ``?``.
        format: ``safetensors``, ``diffusers`` (a folder) or ``pickle``.
        status: ``ok``, ``refused`` (a pickle without the opt-in), ``unsupported`` or ``damaged``.
        reason: why it is not ``ok``, or a note (``inpainting``).
    """

    name: str
    path: str
    kind: str
    base: str
    format: str
    status: str = "ok"
    reason: str = ""

    @property
    def stem(self) -> str:
        """The name A1111 prompts use: file name without folder or suffix (``<lora:stem:0.8>``)."""
        base = Path(self.name).name
        for suffix in WEIGHT_SUFFIXES:
            if base.endswith(suffix):
                return base[: -len(suffix)]
        return base

    @property
    def usable(self) -> bool:
        return self.status == "ok"


def models_root(models_dir: str | None = None, *, required: bool = True) -> Path | None:
    """The models folder: the job's ``model.models_dir``, else ``$FRAMEFARM_MODELS``."""
    chosen = models_dir or os.environ.get(MODELS_ENV)
    if not chosen:
        if required:
            raise InputError("model.models_dir", problem="no models folder is set",
                             fix=f"Set model.models_dir in the job, or the {MODELS_ENV} environment variable, to an "
                                 "A1111-style models folder")
        return None
    root = Path(chosen).expanduser()
    if not root.is_dir():
        raise InputError("model.models_dir", str(root), "is not a folder",
                         f"Point model.models_dir (or {MODELS_ENV}) at a folder such as an A1111 install")
    return root.resolve()


def _find_dir(root: Path, relative: str) -> Path | None:
    """``root/relative`` with each component matched case-insensitively (A1111 folders vary in case)."""
    current = root
    for part in relative.split("/"):
        exact = current / part
        if exact.is_dir():
            current = exact
            continue
        try:
            match = next((c for c in current.iterdir() if c.is_dir() and c.name.lower() == part.lower()), None)
        except OSError:
            return None
        if match is None:
            return None
        current = match
    return current


def kind_folders(root: Path, kind: str) -> list[Path]:
    found: list[Path] = []
    for relative in KIND_FOLDERS[kind]:
        folder = _find_dir(root, relative)
        if folder is not None and folder.resolve() not in [f.resolve() for f in found]:
            found.append(folder)
    return found


def annotator_folder(root: Path | None) -> Path | None:
    if root is None:
        return None
    for relative in ANNOTATOR_FOLDERS:
        folder = _find_dir(root, relative)
        if folder is not None:
            return folder
    return None


def _is_diffusers_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file() or (path / "config.json").is_file()


def _walk(folder: Path) -> Iterable[Path]:
    """Weight files and diffusers folders under ``folder``, in name order, not descending into diffusers folders."""
    try:
        children = sorted(folder.iterdir(), key=lambda p: p.name.lower())
    except OSError:
        return
    for child in children:
        if child.name.startswith("."):
            continue
        if child.is_dir():
            if _is_diffusers_folder(child):
                yield child
            else:
                yield from _walk(child)
        elif child.suffix.lower() in WEIGHT_SUFFIXES:
            yield child


def describe_file(path: Path, folder_kind: str, *, allow_pickle: bool = False) -> tuple[Detection, str, str, str]:
    """Classify one path: (detection, format, status, reason). Never unpickles anything."""
    if path.is_dir():
        detection = detect_diffusers_folder(path)
        status = "ok" if detection.supported else "unsupported"
        return detection, "diffusers", status, detection.note
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        # Reading a pickle's keys means unpickling it: the kind comes from the folder, the base is unknown until
        # an opted-in load reads it with weights_only=True.
        detection = Detection(folder_kind, UNKNOWN)
        if allow_pickle:
            return detection, "pickle", "ok", "pickle (opted in): base is detected when loaded"
        return detection, "pickle", "refused", PICKLE_REASON
    try:
        header = read_header(path)
    except InputError as exc:
        return Detection(folder_kind, UNKNOWN), "safetensors", "damaged", exc.problem
    detection = detect_weights(header.keys(), header.shape)
    if detection.kind == "unknown":
        return detection, "safetensors", "unsupported", detection.note
    status = "ok" if detection.supported else "unsupported"
    return detection, "safetensors", status, detection.note


def detect_diffusers_folder(path: Path) -> Detection:
    """Kind and base of a diffusers folder, from its ``model_index.json`` or ``config.json``."""
    try:
        if (path / "model_index.json").is_file():
            index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
            cls = str(index.get("_class_name", ""))
            if "XL" in cls:
                return Detection("checkpoint", SDXL)
            if cls.startswith("StableDiffusion"):
                unet = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
                return Detection("checkpoint", SD2 if unet.get("cross_attention_dim") == 1024 else SD15,
                                 "SD2.x checkpoints are not supported" if unet.get("cross_attention_dim") == 1024
                                 else "")
            return Detection("unknown", UNKNOWN, f"pipeline {cls or '?'} is not supported")
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Detection("unknown", UNKNOWN, f"unreadable diffusers config: {exc}")
    cls = str(config.get("_class_name", ""))
    if cls == "ControlNetModel":
        return Detection("controlnet", SDXL if config.get("addition_embed_type") == "text_time" else SD15)
    if cls == "AutoencoderKL":
        return Detection("vae", ANY_BASE)
    if cls == "MotionAdapter":
        return Detection("motion_module", SD15 if len(config.get("block_out_channels", ())) == 4 else SDXL)
    return Detection("unknown", UNKNOWN, f"model class {cls or '?'} is not supported")


@dataclass
class ModelLibrary:
    """A scanned models folder. ``ModelLibrary.scan(root)`` reads every header once; lookups are in memory."""

    root: Path
    entries: list[ModelEntry] = field(default_factory=list)
    allow_pickle: bool = False

    @classmethod
    def scan(cls, root: str | Path, *, allow_pickle: bool = False) -> ModelLibrary:
        root = Path(root).resolve()
        entries: list[ModelEntry] = []
        seen: set[Path] = set()
        for folder_kind in KIND_FOLDERS:
            for folder in kind_folders(root, folder_kind):
                for path in _walk(folder):
                    if path in seen:
                        continue
                    seen.add(path)
                    detection, fmt, status, reason = describe_file(path, folder_kind, allow_pickle=allow_pickle)
                    kind = detection.kind if detection.kind != "unknown" else folder_kind
                    if kind != folder_kind and status == "ok":
                        reason = (reason + "; " if reason else "") + f"found in the {folder.name} folder"
                    entries.append(ModelEntry(name=path.relative_to(folder).as_posix(), path=str(path), kind=kind,
                                              base=detection.base, format=fmt, status=status, reason=reason))
        return cls(root=root, entries=entries, allow_pickle=allow_pickle)

    def of_kind(self, kind: str) -> list[ModelEntry]:
        return [e for e in self.entries if e.kind == kind]

    def find(self, kind: str, ref: str, *, field: str) -> ModelEntry:
        """The entry a job names: a relative path (with or without suffix), a bare name, or an absolute path.

        Raises:
            InputError: nothing matches, several do, or the match is refused/unsupported/damaged (with why).
        """
        candidates = self.of_kind(kind)
        wanted = ref.strip().replace("\\", "/")
        # 1. An absolute or root-relative path to a file or folder.
        direct = Path(wanted).expanduser()
        if not direct.is_absolute():
            direct = self.root / wanted
            # A relative reference names a file of this library: "../" must not reach the rest of the disk.
            if not direct.resolve().is_relative_to(self.root):
                raise InputError(field, ref, f"points outside the models folder {self.root}",
                                 "Name a model inside the models folder (framefarm models lists them)")
        elif field.startswith("prompts") and not direct.resolve().is_relative_to(self.root):
            # Prompt tags (<lora:…>) come with prompts, often pasted from the internet: an absolute path there
            # would let a prompt load any file on the machine. Absolute paths are for job fields only.
            raise InputError(field, ref, "is an absolute path outside the models folder in a prompt tag",
                             "Put the file under the models folder and name it without its path")
        if direct.exists():
            match = [e for e in self.entries if Path(e.path) == direct.resolve()]
            if match:
                return self._usable(match[0], field)
            return self._usable(entry_for_path(direct.resolve(), kind, allow_pickle=self.allow_pickle), field)
        # 2. A name inside the kind's folders: exact, without suffix, or the bare stem (A1111 prompt names).
        lowered = wanted.lower()
        for test in (lambda e: e.name.lower() == lowered,
                     lambda e: e.name.lower().rsplit(".", 1)[0] == lowered and e.format != "diffusers",
                     lambda e: e.stem.lower() == lowered):
            match = [e for e in candidates if test(e)]
            if len(match) == 1:
                return self._usable(match[0], field)
            if len(match) > 1:
                # Prefer safetensors over a pickle of the same name (a common pair after a conversion).
                safe = [e for e in match if e.format != "pickle"]
                if len(safe) == 1:
                    return self._usable(safe[0], field)
                raise InputError(field, ref, f"matches {len(match)} {kind} files: "
                                             f"{', '.join(e.name for e in match[:5])}",
                                 "Give the name with its folder and suffix")
        known = ", ".join(e.name for e in candidates[:12]) or "none"
        folders = " or ".join(KIND_FOLDERS[kind][:2])
        raise InputError(field, ref, f"is not a {kind} in {self.root}",
                         f"Put the file under {folders}; known {kind} names: {known}")

    def _usable(self, entry: ModelEntry, field: str) -> ModelEntry:
        return require_usable(entry, field)


def require_usable(entry: ModelEntry, field: str) -> ModelEntry:
    """``entry`` when it can be loaded; else an InputError saying why not (refused pickle, unsupported, damaged)."""
    if entry.status == "ok":
        return entry
    if entry.status == "refused":
        raise InputError(field, entry.name, f"is refused: {entry.reason}")
    if entry.status == "damaged":
        raise InputError(field, entry.path, f"is damaged: {entry.reason.removeprefix('is ')}",
                         "Download or copy the file again (it is damaged or incomplete), or remove it")
    raise InputError(field, entry.name, f"cannot be used ({entry.status}): {entry.reason}",
                     "Pick a supported SD1.5 or SDXL file (framefarm models lists them)")


def entry_for_path(path: Path, kind: str, *, allow_pickle: bool = False) -> ModelEntry:
    """A library entry for a file outside the library (an absolute path in a job)."""
    detection, fmt, status, reason = describe_file(path, kind, allow_pickle=allow_pickle)
    found = detection.kind if detection.kind != "unknown" else kind
    if status == "ok" and found != kind:
        status, reason = "unsupported", f"it is a {found}, not a {kind}"
    return ModelEntry(name=path.name, path=str(path), kind=found, base=detection.base, format=fmt, status=status,
                      reason=reason)


_library_cache: dict[tuple[str, bool], tuple[float, ModelLibrary]] = {}


def open_library(models_dir: str | None = None, *, allow_pickle: bool = False) -> ModelLibrary:
    """The scanned library of the job's models folder, rescanned when any kind folder changed (mtime)."""
    root = models_root(models_dir)
    if root is None:  # models_root raises when nothing is set; this keeps type checkers honest
        raise InputError("model.models_dir", problem="no models folder is set")
    stamp = max([root.stat().st_mtime] + [f.stat().st_mtime for kind in KIND_FOLDERS
                                          for f in kind_folders(root, kind)])
    key = (str(root), allow_pickle)
    cached = _library_cache.get(key)
    if cached and cached[0] == stamp:
        return cached[1]
    library = ModelLibrary.scan(root, allow_pickle=allow_pickle)
    _library_cache[key] = (stamp, library)
    return library
