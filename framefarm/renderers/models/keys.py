"""Content hashes of the model files a job uses, for frame keys and manifests.

``model_input_hashes(job)`` returns ``{field: sha256}`` for the checkpoint, the VAE override, every ControlNet
model and fixed control image, and the LoRAs and embeddings its prompts name — so replacing a model file's content
(same name, new weights) changes the keys of the frames it feeds, and re-renders them. ``model_short_hashes`` gives
the same files' A1111 short hashes for a manifest. Hashes are cached by (path, size, mtime), so a rerun costs
nothing. A job without a models folder or checkpoint (the preview backend) gets ``{}``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from framefarm.errors import InputError
from framefarm.renderers.models.hashing import SHORT_HASH_LENGTH, sha256_of

if TYPE_CHECKING:  # the type only: importing the job models at run time would pull in pydantic
    from framefarm.job.schema import AnyJob


def model_files(job: AnyJob) -> dict[str, str]:
    """Field → path of every model file the job reads (resolved through its models folder)."""
    from framefarm.renderers.models.library import models_root, open_library
    from framefarm.renderers.prompt_weights import extract_extra_networks

    refs = getattr(job, "model", None)
    if refs is None or not refs.checkpoint or models_root(refs.models_dir, required=False) is None:
        return {}
    library = open_library(refs.models_dir, allow_pickle=refs.allow_pickle)
    files: dict[str, str] = {}
    try:
        files["model.checkpoint"] = library.find("checkpoint", refs.checkpoint, field="model.checkpoint").path
    except InputError:
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", refs.checkpoint):
            raise
        # A hub id: its snapshot folder is hashed when loaded; the id itself is already in the frame key.
    schedule = getattr(job, "checkpoint_schedule", None)
    if schedule:  # a Deforum job's other checkpoints count like the main one
        from framefarm.animation.keyframes import parse_string_schedule

        for name in sorted(set(parse_string_schedule(schedule, frames=job.frames, field="checkpoint_schedule"))):
            files[f"checkpoint_schedule.{name}"] = library.find("checkpoint", name, field="checkpoint_schedule").path
    if refs.vae:
        files["model.vae"] = library.find("vae", refs.vae, field="model.vae").path
    for index, unit in enumerate(getattr(job, "controlnet", ())):
        files[f"controlnet.{index}.model"] = library.find("controlnet", unit.model,
                                                          field=f"controlnet.{index}.model").path
        if unit.image:
            files[f"controlnet.{index}.image"] = unit.image
    motion = getattr(job, "animatediff", None)
    if motion is not None and motion.motion_module:
        files["animatediff.motion_module"] = library.find("motion_module", motion.motion_module,
                                                          field="animatediff.motion_module").path
        for lora in motion.motion_loras:
            files[f"animatediff.motion_lora.{lora.name}"] = library.find("motion_module", lora.name,
                                                                         field="animatediff.motion_loras").path
    texts = list(job.prompts.values()) + [job.positive_prompt, job.negative_prompt]
    for text in texts:
        for network in extract_extra_networks(text)[1]:
            if network.kind == "lora":
                files[f"lora.{network.name}"] = library.find("lora", network.name, field="prompts").path
            else:
                files[f"hypernetwork.{network.name}"] = library.find("hypernetwork", network.name,
                                                                     field="prompts").path
    joined = "\n".join(texts)
    for entry in library.of_kind("embedding"):
        if entry.usable and re.search(r"(?<![\w])" + re.escape(entry.stem) + r"(?![\w])", joined, re.IGNORECASE):
            files[f"embedding.{entry.stem}"] = entry.path
    return files


def model_input_hashes(job: AnyJob) -> dict[str, str]:
    """``{field: full SHA-256}`` of the model files the job uses (see the module docstring)."""
    return {field: sha256_of(path) for field, path in model_files(job).items()}


def model_short_hashes(job: AnyJob) -> dict[str, str]:
    """The same files' A1111 short hashes (10 hex digits), for a manifest a person reads."""
    return {field: digest[:SHORT_HASH_LENGTH] for field, digest in model_input_hashes(job).items()}
