"""AnimateDiff motion modules and motion LoRAs, loaded offline from ``models/AnimateDiff``.

Two layouts of motion module load:

* a diffusers ``MotionAdapter`` folder (``config.json`` + weights), read with ``local_files_only=True``;
* a single file in the original AnimateDiff layout (``mm_sd_v15_v2``, ``v3_sd15_mm``, ``mm_sdxl_v10_beta``): its keys
  are renamed to diffusers' and its config comes from a skeleton shipped in ``configs/motion_*`` (v2: with a
  mid-block module; v3 and SDXL beta: without), with every shape-bearing field (channels, layers, maximum frames)
  read from the file itself. ``from_single_file`` would ask the hub for the config (OFFLINE_MODELS.md).

Motion LoRAs come in the original layout (``…attention_blocks.0.processor.to_q_lora.down.weight``), which diffusers
loads as a silent no-op. They are converted here and fused into the temporal attention weights, and *every* pair must
land on a projection of the right shape: a file that attaches nothing is an error, and so is one whose projections
do not fit this module (a LoRA trained for another module version), with the module version named.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from framefarm.cache import LruCache
from framefarm.errors import InputError
from framefarm.renderers.models.detect import SDXL

_CACHE = 2
_adapters: LruCache[tuple[str, ...], Any] = LruCache(_CACHE, name="motion adapters")

# Original AnimateDiff names → diffusers names (the motion modules' own renames; ``pos_encoder.pe`` is a fixed
# sinusoid that diffusers recomputes, so it is read for its length only).
_RENAMES = ((".temporal_transformer", ""), (".attention_blocks.0", ".attn1"), (".attention_blocks.1", ".attn2"),
            (".norms.0", ".norm1"), (".norms.1", ".norm2"), (".ff_norm", ".norm3"))


@dataclass(frozen=True)
class MotionInfo:
    """What a loaded motion module is, for messages and manifests: ``version`` is ``v2``, ``v3`` or ``sdxl-beta``
    (single files) or ``diffusers`` (a folder, described by ``mid_block`` and ``channels``)."""

    version: str
    channels: tuple[int, ...]
    mid_block: bool
    max_frames: int


def skeleton_config(name: str) -> dict[str, Any]:
    text = resources.files("framefarm.renderers.models").joinpath("configs", name, "config.json").read_text("utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def convert_original_keys(state: dict[str, Any]) -> dict[str, Any]:
    """Original-layout motion module tensors → diffusers ``MotionAdapter`` names (positional tables dropped)."""
    out = {}
    for key, value in state.items():
        if ".pos_encoder." in key:
            continue
        for old, new in _RENAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def _count(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def single_file_config(state: dict[str, Any], family: str) -> tuple[dict[str, Any], str]:
    """The MotionAdapter config for an original-layout file: the family's skeleton with shapes read from the file."""
    keys = list(state)
    mid = any(k.startswith("mid_block.motion_modules.") for k in keys)
    version = "sdxl-beta" if family == SDXL else ("v2" if mid else "v3")
    config = skeleton_config({"v2": "motion_v2", "v3": "motion_v3", "sdxl-beta": "motion_sdxl_beta"}[version])
    blocks = _count(keys, r"down_blocks\.(\d+)\.motion_modules\.")
    channels = []
    for block in range(blocks):
        key = f"down_blocks.{block}.motion_modules.0.temporal_transformer.proj_in.weight"
        if key not in state:
            raise InputError("animatediff.motion_module", key, "is missing from the motion module file",
                             "Use an AnimateDiff motion module (v2, v3 or SDXL beta) or a diffusers MotionAdapter")
        channels.append(int(state[key].shape[0]))
    pe = next((v for k, v in state.items() if k.endswith("pos_encoder.pe")), None)
    config.update(block_out_channels=channels, use_motion_mid_block=mid,
                  motion_layers_per_block=_count(keys, r"down_blocks\.0\.motion_modules\.(\d+)\."))
    if pe is not None:
        config["motion_max_seq_length"] = int(pe.shape[1])
    return config, version


def load_motion_adapter(entry, family: str, *, allow_pickle: bool = False):
    """``(MotionAdapter, MotionInfo)`` for a library entry, from the process cache or loaded now (float32, CPU;
    the renderer moves it)."""
    from framefarm.renderers.models.hashing import sha256_of

    return _adapters.get_or_load((sha256_of(entry.path), family),
                                 lambda: _load(entry, family, allow_pickle=allow_pickle))


def _load(entry, family: str, *, allow_pickle: bool):
    from diffusers import MotionAdapter

    from framefarm.renderers.models.loader import read_state_dict

    if entry.format == "diffusers":
        adapter = MotionAdapter.from_pretrained(entry.path, local_files_only=True)
        version = "diffusers"
    else:
        state = read_state_dict(entry, allow_pickle=allow_pickle)
        if is_motion_lora(state):
            raise InputError("animatediff.motion_module", entry.name, "is a motion LoRA, not a motion module",
                             'List it under animatediff.motion_loras and name a module (e.g. "mm_sd_v15_v2")')
        config, version = single_file_config(state, family)
        adapter = MotionAdapter(**config)
        missing, unexpected = adapter.load_state_dict(convert_original_keys(state), strict=False)
        # diffusers keeps its own copy of the fixed sinusoid (``pos_embed.pe``), built from the config's length.
        missing = [k for k in missing if not k.endswith("pos_embed.pe")]
        if missing or unexpected:
            raise InputError("animatediff.motion_module", entry.name,
                             f"does not fit the {version} motion-module layout ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected tensors, e.g. {(missing or unexpected)[0]})",
                             "Use an original AnimateDiff motion module file or a diffusers MotionAdapter folder")
    adapter.eval().requires_grad_(False)
    config = adapter.config
    info = MotionInfo(version=version, channels=tuple(config.block_out_channels),
                      mid_block=bool(config.use_motion_mid_block), max_frames=int(config.motion_max_seq_length))
    return adapter, info


# ---------------------------------------------------------------------------------------------------------------
# Motion LoRAs

_LORA_KEY = re.compile(r"^(?P<module>.+?)\.(?:processor\.)?(?P<proj>to_q|to_k|to_v|to_out)_lora\.(?P<part>down|up)"
                       r"\.weight$")


def is_motion_lora(state: dict[str, Any]) -> bool:
    return any(_LORA_KEY.match(k) for k in state)


def lora_pairs(state: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Original-layout motion LoRA → ``{diffusers module path of the projection: (down, up)}``.

    ``down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor
    .to_q_lora.down.weight`` targets ``down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q``.
    """
    parts: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        match = _LORA_KEY.match(key)
        if not match:
            continue
        module = match["module"]
        for old, new in _RENAMES:
            module = module.replace(old, new)
        target = f"{module}.{'to_out.0' if match['proj'] == 'to_out' else match['proj']}"
        parts.setdefault(target, {})[match["part"]] = value
    pairs = {}
    for target, found in parts.items():
        if set(found) != {"down", "up"}:
            raise InputError("animatediff.motion_loras", target, "has a LoRA down or up matrix but not both",
                             "The file is incomplete: download or convert it again")
        pairs[target] = (found["down"], found["up"])
    return pairs


def fuse_motion_loras(unet, loras: list[tuple[str, dict[str, Any], float]], info: MotionInfo) -> int:
    """Add ``weight · up @ down`` of each motion LoRA to the motion UNet's temporal projections, in place.

    Args:
        unet: a ``UNetMotionModel`` whose motion modules are this job's own copy (never a shared cache entry).
        loras: ``(name, state dict, weight)`` per LoRA.
        info: the motion module, named in errors.

    Returns:
        The number of projections changed. Raises :class:`InputError` for a file that attaches nothing or whose
        projections do not exist or do not fit this module.
    """
    import torch

    modules = dict(unet.named_modules())
    changed = 0
    for name, state, weight in loras:
        pairs = lora_pairs(state)
        if not pairs:
            raise InputError("animatediff.motion_loras", name, "attaches to nothing: it holds no motion-LoRA "
                             "projections (…attention_blocks.N.processor.to_q_lora.down.weight)",
                             "Use an AnimateDiff motion LoRA (v2_lora_ZoomIn …); image LoRAs go in the prompt")
        misfits = []
        for target, (down, up) in pairs.items():
            layer = modules.get(target)
            shape = tuple(layer.weight.shape) if isinstance(layer, torch.nn.Linear) else None
            if shape != (up.shape[0], down.shape[1]):
                misfits.append(f"{target} ({'missing' if shape is None else f'{shape} here'}, "
                               f"LoRA {tuple(up.shape[:1]) + tuple(down.shape[1:])})")
        if misfits:
            raise InputError("animatediff.motion_loras", name,
                             f"was made for another motion-module version: {len(misfits)} of {len(pairs)} "
                             f"projections do not fit the {describe(info)} module, e.g. {misfits[0]}",
                             "Use a motion LoRA trained for this module (the original motion LoRAs are for "
                             "mm_sd_v15_v2), or pick the module the LoRA was made for")
        with torch.no_grad():
            for target, (down, up) in pairs.items():
                layer = modules[target]
                delta = up.to(torch.float32) @ down.to(torch.float32)
                layer.weight += (weight * delta).to(dtype=layer.weight.dtype, device=layer.weight.device)
                changed += 1
    return changed


def describe(info: MotionInfo) -> str:
    mid = "with" if info.mid_block else "without"
    return f"{info.version} ({len(info.channels)} blocks of {list(info.channels)} channels, {mid} mid-block module)"


def entry_path(entry) -> Path:
    return Path(entry.path)
