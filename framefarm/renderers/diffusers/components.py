"""The models a job renders with — base checkpoint, VAE, ControlNets — loaded from the process caches, with the
worker's speed levers applied once, and the one :class:`~framefarm.renderers.diffusers.patches.ModelPatches` that owns
what is patched into them.

Every kind (video2video, the Deforum chain, AnimateDiff) gets its models here, so a model set-up fixed or sped up
once is fixed or sped up for all three.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framefarm.errors import InputError
from framefarm.renderers import accel
from framefarm.renderers.diffusers.patches import ModelPatches, patches_of


@dataclass
class Components:
    """The loaded models of one job (all from the process caches).

    Attributes:
        library: the models folder (``None``: a checkpoint given by path or Hugging Face id, no folder).
        base: the base model (:class:`~framefarm.renderers.models.loader.LoadedBase`).
        vae: the VAE in use (the job's ``model.vae``, else the checkpoint's).
        units: ``(unit index, ControlNetUnit, ControlNetModel)`` of the units that can act (an empty guidance window
            leaves a unit out).
        annotators: the preprocessors' weights folder (``None``: none).
        patches: LoRA / hypernetwork / fused-projection state of ``base`` (shared by every job using the base).
        compiled: how this job's models run (:func:`~framefarm.renderers.accel.compile_choice` on this device):
            ``(scope, mode)``, or ``None`` for eager.
    """

    library: Any
    base: Any
    vae: Any
    units: list[tuple[int, Any, Any]]
    annotators: Path | None
    patches: ModelPatches
    compiled: accel.CompileChoice | None = None

    @property
    def lock(self):
        """Held while a group renders: the base's weights and processors are shared by every task of the process."""
        return self.base.lock

    def select_compiled(self, *extra) -> None:
        """Switch the shared models (and ``extra`` ones, e.g. a motion UNet) to this job's compiled or eager
        forward. Call with :attr:`lock` held, before each group: another job of the process may have switched them."""
        for model in (self.base.unet, self.vae, *(model for _, _, model in self.units), *extra):
            accel.use_compiled(model, self.compiled)


def load_components(job, checkpoint: str | None = None) -> Components:
    """The models for ``job`` (or for ``checkpoint`` in place of ``job.model.checkpoint``: a Deforum checkpoint
    schedule), loaded once per process and sped up with the worker's levers."""
    from framefarm.renderers.models.library import entry_for_path, open_library, require_usable
    from framefarm.renderers.models.loader import load_base, load_controlnet, load_vae
    from framefarm.renderers.preprocessors import annotator_folder, get_preprocessor

    refs = job.model
    name = checkpoint or refs.checkpoint
    if not name:
        raise InputError("model.checkpoint", problem="is not set",
                         fix="Name an SD1.5 or SDXL checkpoint of the models folder (framefarm models lists them)")
    field = "model.checkpoint" if checkpoint is None else "checkpoint_schedule"
    library = open_models_folder(refs)
    base = None
    if library is not None:
        try:
            entry = library.find("checkpoint", name, field=field)
        except InputError:
            if not looks_like_hub_id(name):
                raise
        else:
            base = load_base(entry, dtype_name=refs.dtype, allow_pickle=refs.allow_pickle)
    if base is None:
        if looks_like_hub_id(name):
            base = load_base(name, dtype_name=refs.dtype)  # local Hugging Face cache only
        elif Path(name).is_absolute() and Path(name).exists():
            entry = entry_for_path(Path(name), "checkpoint", allow_pickle=refs.allow_pickle)
            base = load_base(require_usable(entry, field), dtype_name=refs.dtype, allow_pickle=refs.allow_pickle)
        else:
            open_library(refs.models_dir)  # raises: no models folder is set
    vae = base.vae
    if refs.vae:
        if library is None:
            raise InputError("model.vae", refs.vae, "needs a models folder", "Set model.models_dir")
        vae = load_vae(library.find("vae", refs.vae, field="model.vae"), base, allow_pickle=refs.allow_pickle)
    units = []
    for index, unit in enumerate(job.controlnet):
        get_preprocessor(unit.preprocessor, field=f"controlnet.{index}.preprocessor")  # fail before rendering
        if unit.guidance_start >= unit.guidance_end:
            continue  # an empty guidance window: the unit never acts
        if library is None:
            raise InputError(f"controlnet.{index}.model", unit.model, "needs a models folder", "Set model.models_dir")
        entry = library.find("controlnet", unit.model, field=f"controlnet.{index}.model")
        units.append((index, unit, load_controlnet(entry, base, allow_pickle=refs.allow_pickle)))
    patches = patches_of(base)
    with base.lock:
        levers = accel.worker_acceleration()
        for model in (base.unet, vae, *(model for _, _, model in units)):
            accel.accelerate_model(model, levers)
        patches.track_fused(base.unet)
    compiled = accel.device_choice(accel.compile_choice(job, levers), base.device, levers)
    return Components(library=library, base=base, vae=vae, units=units, annotators=annotator_folder(refs.models_dir),
                      patches=patches, compiled=compiled)


def open_models_folder(refs):
    """The job's models folder, or ``None`` when it has none (a checkpoint by path or hub id)."""
    from framefarm.renderers.models.library import models_root, open_library

    if models_root(refs.models_dir, required=False) is None:
        return None
    return open_library(refs.models_dir, allow_pickle=refs.allow_pickle)


def looks_like_hub_id(ref: str) -> bool:
    """``org/name`` with no weights suffix, and not a path on disk."""
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", ref) or Path(ref).suffix in (".safetensors", ".ckpt"):
        return False
    return not Path(ref).exists()
