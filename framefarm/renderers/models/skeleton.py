"""Config skeletons shipped with framefarm, completed with the shapes read from a checkpoint's own tensors.

A single-file checkpoint holds weights but no configs. diffusers would fetch the configs from the hub
(``from_single_file`` maps the file to a hub repo, and retries online even with ``local_files_only=True``, as
https://github.com/huggingface/diffusers/issues/8752 and https://github.com/huggingface/diffusers/issues/7902
report). framefarm ships one skeleton per family under ``configs/`` and fills in every
field the weights show: channel widths, layers per block, attention depths, cross-attention width, text-encoder
sizes, the SDXL time-embedding width. What the weights cannot show comes from the family's convention:

* attention heads: SD1.5 UNets use 8 heads per block; SDXL UNets and every CLIP text encoder use 64-wide heads
  (``channels // 64``, at least 1 — the 5/10/20 of SDXL, the 12 of CLIP-L, the 20 of OpenCLIP-G);
* activations, norm epsilons, the VAE scaling factor, the scheduler's training betas: the skeleton's values.

So real SD1.5/SDXL checkpoints get exactly their published configs, and compatible variants (inpainting UNets with
9 input channels, the small random models the tests build) load with the same code.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from framefarm.renderers.models.detect import SD15, SDXL

Shapes = dict[str, tuple[int, ...]]

FAMILY_FOLDERS = {SD15: "sd15", SDXL: "sdxl"}
CONTROLNET_FOLDERS = {SD15: "controlnet_sd15", SDXL: "controlnet_sdxl"}
SD15_HEADS = 8
HEAD_WIDTH = 64


@lru_cache(maxsize=None)
def _read_config(relative: str) -> dict[str, Any]:
    text = resources.files("framefarm.renderers.models").joinpath("configs", relative).read_text(encoding="utf-8")
    return json.loads(text)


def skeleton(family: str, component: str) -> dict[str, Any]:
    """A copy of the shipped config of ``component`` (``unet``, ``vae``, ``text_encoder``, …) for a family."""
    if component == "controlnet":
        return copy.deepcopy(_read_config(f"{CONTROLNET_FOLDERS[family]}/config.json"))
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    return copy.deepcopy(_read_config(f"{FAMILY_FOLDERS[family]}/{component}/{name}"))


def heads_for(width: int) -> int:
    """Attention heads of a 64-wide-head block of ``width`` channels (at least one)."""
    return max(1, width // HEAD_WIDTH)


def _indices(shapes: Shapes, prefix: str) -> list[int]:
    """Sorted distinct integers that follow ``prefix`` in the keys (``input_blocks.`` → 0, 1, 2, …)."""
    found = set()
    for key in shapes:
        if key.startswith(prefix):
            head = key[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


def _need(shapes: Shapes, key: str) -> tuple[int, ...]:
    if key not in shapes:
        raise KeyError(key)
    return shapes[key]


# ---------------------------------------------------------------------------------------------------------------
# UNet and ControlNet down path (LDM layout: input_blocks / middle_block / output_blocks)


def _ldm_down_path(shapes: Shapes, prefix: str, family: str) -> dict[str, Any]:
    ids = _indices(shapes, f"{prefix}input_blocks.")
    downsamplers = [i for i in ids if f"{prefix}input_blocks.{i}.0.op.weight" in shapes]
    levels = len(downsamplers) + 1
    layers = (len(ids) - 1 - len(downsamplers)) // levels
    channels, attention, depth = [], [], []
    cross_dim, linear = None, False
    for level in range(levels):
        first = 1 + level * (layers + 1)
        channels.append(_need(shapes, f"{prefix}input_blocks.{first}.0.out_layers.3.weight")[0])
        proj_in = shapes.get(f"{prefix}input_blocks.{first}.1.proj_in.weight")
        attention.append(proj_in is not None)
        if proj_in is not None:
            linear = len(proj_in) == 2
            depth.append(len(_indices(shapes, f"{prefix}input_blocks.{first}.1.transformer_blocks.")))
            cross_dim = _need(shapes, f"{prefix}input_blocks.{first}.1.transformer_blocks.0.attn2.to_k.weight")[1]
        else:
            depth.append(1)
    config: dict[str, Any] = {
        "in_channels": _need(shapes, f"{prefix}input_blocks.0.0.weight")[1],
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "transformer_layers_per_block": depth,
        "use_linear_projection": linear,
    }
    if cross_dim is not None:
        config["cross_attention_dim"] = cross_dim
    if family == SD15:
        config["attention_head_dim"] = SD15_HEADS
    else:
        config["attention_head_dim"] = [heads_for(c) for c in channels]
    label = shapes.get(f"{prefix}label_emb.0.0.weight")
    if label is not None:
        config["projection_class_embeddings_input_dim"] = label[1]
    return config


def unet_config(shapes: Shapes, family: str, *, pooled_dim: int | None = None,
                prefix: str = "model.diffusion_model.") -> dict[str, Any]:
    """The UNet config of an LDM-layout checkpoint: skeleton + shapes. ``pooled_dim``: SDXL text encoder 2's."""
    config = skeleton(family, "unet")
    down = _ldm_down_path(shapes, prefix, family)
    config.update(down)
    config["up_block_types"] = ["CrossAttnUpBlock2D" if t.startswith("CrossAttn") else "UpBlock2D"
                                for t in reversed(down["down_block_types"])]
    config["out_channels"] = _need(shapes, f"{prefix}out.2.weight")[0]
    if family == SDXL:
        if pooled_dim is None or "projection_class_embeddings_input_dim" not in down:
            raise KeyError(f"{prefix}label_emb.0.0.weight")
        config["addition_time_embed_dim"] = (down["projection_class_embeddings_input_dim"] - pooled_dim) // 6
    return config


def controlnet_config(shapes: Shapes, family: str, *, base_unet: dict[str, Any] | None = None,
                      prefix: str = "") -> dict[str, Any]:
    """The ControlNet config of an LDM-layout ControlNet (keys under ``prefix``, e.g. ``control_model.``)."""
    config = skeleton(family, "controlnet")
    down = _ldm_down_path(shapes, prefix, family)
    config.update(down)
    # The hint encoder: conv_in, then pairs (same width, then stride-2 to the next width), conv_out at index 14.
    config["conditioning_embedding_out_channels"] = [
        _need(shapes, f"{prefix}input_hint_block.{i}.weight")[0] for i in (0, 4, 8, 12)
    ]
    if family == SDXL:
        if base_unet is not None:
            config["addition_time_embed_dim"] = base_unet["addition_time_embed_dim"]
        elif down.get("projection_class_embeddings_input_dim") != 2816:
            raise KeyError("an SDXL ControlNet of non-standard size needs its base model's config")
    return config


# ---------------------------------------------------------------------------------------------------------------
# VAE


def vae_config(shapes: Shapes, family: str, *, prefix: str = "first_stage_model.") -> dict[str, Any]:
    """The VAE config of an LDM-layout (``encoder.down.N.block.M``) or diffusers-layout VAE under ``prefix``."""
    config = skeleton(family, "vae")
    if any(k.startswith(f"{prefix}encoder.down_blocks.") for k in shapes):
        levels = _indices(shapes, f"{prefix}encoder.down_blocks.")
        layers = len(_indices(shapes, f"{prefix}encoder.down_blocks.0.resnets."))
        channels = [_need(shapes, f"{prefix}encoder.down_blocks.{i}.resnets.0.conv2.weight")[0] for i in levels]
    else:
        levels = _indices(shapes, f"{prefix}encoder.down.")
        layers = len(_indices(shapes, f"{prefix}encoder.down.0.block."))
        channels = [_need(shapes, f"{prefix}encoder.down.{i}.block.0.conv2.weight")[0] for i in levels]
    config.update({
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "in_channels": _need(shapes, f"{prefix}encoder.conv_in.weight")[1],
        "latent_channels": _need(shapes, f"{prefix}encoder.conv_out.weight")[0] // 2,
    })
    return config


# ---------------------------------------------------------------------------------------------------------------
# Text encoders


def clip_config(shapes: Shapes, family: str, component: str, *, prefix: str) -> dict[str, Any]:
    """An OpenAI-layout CLIP text encoder (``prefix`` ends before ``embeddings.``/``encoder.``)."""
    config = skeleton(family, component)
    vocab, hidden = _need(shapes, f"{prefix}embeddings.token_embedding.weight")
    config.update({
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": _need(shapes, f"{prefix}embeddings.position_embedding.weight")[0],
        "num_hidden_layers": len(_indices(shapes, f"{prefix}encoder.layers.")),
        "intermediate_size": _need(shapes, f"{prefix}encoder.layers.0.mlp.fc1.weight")[0],
        "num_attention_heads": heads_for(hidden),
    })
    if family == SD15:
        config["projection_dim"] = hidden
    return config


def open_clip_config(shapes: Shapes, family: str, component: str, *, prefix: str) -> dict[str, Any]:
    """An OpenCLIP-layout text encoder (SDXL's second: ``conditioner.embedders.1.model.``)."""
    config = skeleton(family, component)
    vocab, hidden = _need(shapes, f"{prefix}token_embedding.weight")
    projection = shapes.get(f"{prefix}text_projection")
    config.update({
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": _need(shapes, f"{prefix}positional_embedding")[0],
        "num_hidden_layers": len(_indices(shapes, f"{prefix}transformer.resblocks.")),
        "intermediate_size": _need(shapes, f"{prefix}transformer.resblocks.0.mlp.c_fc.weight")[0],
        "num_attention_heads": heads_for(hidden),
        "projection_dim": projection[1] if projection else hidden,
    })
    return config

