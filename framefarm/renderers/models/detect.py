"""What a weights file is, read from its tensor names and shapes alone (no torch, no unpickling).

Kinds: ``checkpoint`` (a whole SD model), ``controlnet``, ``lora``, ``embedding`` (textual inversion), ``vae``,
``motion_module`` (AnimateDiff), ``hypernetwork``. Bases: ``SD1.5`` and ``SDXL`` are the ones framefarm renders;
``SD2.x`` and ``SDXL refiner`` are recognised and reported as unsupported; a VAE fits both (the two VAEs share one
architecture), so its base is ``SD1.5/SDXL``.

Key layouts recognised (the original LDM/A1111 layout, kohya LoRAs, diffusers/PEFT layouts):

* SD1.5 checkpoint: ``model.diffusion_model.*`` + ``cond_stage_model.transformer.text_model.*`` (OpenAI CLIP-L).
* SD2.x: ``cond_stage_model.model.*`` (OpenCLIP-H).
* SDXL: ``conditioner.embedders.0.transformer.*`` (CLIP-L) + ``conditioner.embedders.1.model.*`` (OpenCLIP-G);
  the refiner has only ``conditioner.embedders.0.model.*``.
* ControlNet: ``control_model.*`` or bare ``input_hint_block.*`` + ``zero_convs.*``; diffusers layout
  ``controlnet_cond_embedding.*``. SDXL when it has ``label_emb`` / ``add_embedding`` (the SDXL time-text embedding).
* LoRA: kohya ``lora_unet_*`` / ``lora_te_*`` (SD1.5) / ``lora_te1_*``, ``lora_te2_*`` (SDXL); diffusers/PEFT
  ``unet.*.lora_A.weight``, ``*.lora.down.weight``, ``text_encoder_2.*``.
* Embedding: A1111 safetensors ``emb_params`` (SD1.5), ``clip_l`` + ``clip_g`` (SDXL).
* VAE: ``encoder.down.*`` / ``decoder.up.*`` (LDM) or ``encoder.down_blocks.*`` (diffusers), optionally under
  ``first_stage_model.``.
* AnimateDiff motion module: ``*motion_modules*`` keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SD15 = "SD1.5"
SDXL = "SDXL"
SD2 = "SD2.x"
SDXL_REFINER = "SDXL refiner"
ANY_BASE = "SD1.5/SDXL"
UNKNOWN = "?"
SUPPORTED_BASES = (SD15, SDXL)

KINDS = ("checkpoint", "controlnet", "lora", "embedding", "vae", "motion_module", "hypernetwork")

ShapeOf = Callable[[str], "tuple[int, ...] | None"]


@dataclass(frozen=True)
class Detection:
    """What a file holds.

    Attributes:
        kind: one of :data:`KINDS`, or ``"unknown"``.
        base: :data:`SD15`, :data:`SDXL`, :data:`ANY_BASE`, an unsupported base, or :data:`UNKNOWN`.
        note: a detail worth listing (``"inpainting"``, ``"EMA weights"``, what is unsupported).
    """

    kind: str
    base: str
    note: str = ""

    @property
    def supported(self) -> bool:
        return self.kind != "unknown" and self.base not in (SD2, SDXL_REFINER)


def _has_prefix(keys: list[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def detect_weights(keys: list[str], shape_of: ShapeOf) -> Detection:
    """Classify a state dict by its key names (and a few shapes)."""
    # 1. Whole checkpoints.
    if _has_prefix(keys, "model.diffusion_model."):
        in_channels = (shape_of("model.diffusion_model.input_blocks.0.0.weight") or (0, 4))[1]
        note = "inpainting" if in_channels == 9 else ""
        if _has_prefix(keys, "conditioner.embedders.1.model."):
            return Detection("checkpoint", SDXL, note)
        if _has_prefix(keys, "conditioner.embedders.0.model."):
            return Detection("checkpoint", SDXL_REFINER, "the SDXL refiner is not supported yet")
        if _has_prefix(keys, "cond_stage_model.model."):
            return Detection("checkpoint", SD2, "SD2.x checkpoints are not supported")
        if _has_prefix(keys, "cond_stage_model.transformer."):
            return Detection("checkpoint", SD15, note)
        return Detection("checkpoint", UNKNOWN, "no text encoder found in the file")
    # 2. ControlNet, LDM or diffusers layout.
    if any("input_hint_block." in k for k in keys) or _has_prefix(keys, "controlnet_cond_embedding."):
        sdxl = any(k.split(".")[-3:-1] == ["label_emb", "0"] or "add_embedding." in k for k in keys)
        return Detection("controlnet", SDXL if sdxl else _cross_attention_base(keys, shape_of))
    # 3. LoRA.
    if any(k.startswith(("lora_unet_", "lora_te")) or ".lora_down." in k or ".lora_A." in k or ".lora.down." in k
           for k in keys):
        return Detection("lora", _lora_base(keys, shape_of))
    # 4. Textual-inversion embeddings.
    if "clip_g" in keys and "clip_l" in keys:
        return Detection("embedding", SDXL)
    if "emb_params" in keys:
        return Detection("embedding", SD15)
    # 5. VAE.
    vae_keys = [k.removeprefix("first_stage_model.").removeprefix("vae.") for k in keys]
    if any(k.startswith(("encoder.down.", "encoder.down_blocks.")) for k in vae_keys) and any(
            k.startswith(("decoder.up.", "decoder.up_blocks.")) for k in vae_keys):
        return Detection("vae", ANY_BASE)
    # 6. AnimateDiff motion modules.
    if any("motion_modules" in k for k in keys):
        # SD1.5 UNets have four resolution levels (down_blocks.0-3), SDXL three.
        if _has_prefix(keys, "down_blocks.3."):
            return Detection("motion_module", SD15)
        return Detection("motion_module", SDXL if _has_prefix(keys, "down_blocks.2.") else UNKNOWN)
    return Detection("unknown", UNKNOWN, "not a weights layout framefarm knows")


def _cross_attention_base(keys: list[str], shape_of: ShapeOf) -> str:
    """SD1.5 (CLIP-L, 768) or SD2.x (OpenCLIP-H, 1024) by the cross-attention width; small test models are SD1.5."""
    for key in keys:
        if key.endswith("attn2.to_k.weight"):
            shape = shape_of(key)
            if shape and shape[-1] == 1024:
                return SD2
            return SD15
    return SD15


def _lora_base(keys: list[str], shape_of: ShapeOf) -> str:
    if any(k.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.")) for k in keys):
        return SDXL
    if any(k.startswith(("lora_te_", "text_encoder.")) for k in keys):
        return SD15
    # A UNet-only LoRA: the width its cross-attention keys read from tells the base (768 SD1.5, 2048 SDXL).
    for key in keys:
        if "attn2" in key and "to_k" in key and ("lora_down" in key or "lora_A" in key or "lora.down" in key):
            shape = shape_of(key)
            if shape:
                return {768: SD15, 2048: SDXL, 1024: SD2}.get(shape[-1], UNKNOWN)
    return UNKNOWN
