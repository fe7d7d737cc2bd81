"""LoRAs (``<lora:name:weight>`` in a prompt), fused into the cached base model and restored exactly afterwards.

Each LoRA layer adds ``weight · (alpha / rank) · up @ down`` to one linear (or convolution) weight of the UNet or a
text encoder. framefarm fuses that delta into the weight (:class:`framefarm.renderers.diffusers.patches.ModelPatches`
keeps the original bits and restores them when the next group asks for other LoRAs, so the base is never reloaded). (diffusers' own LoRA loading needs the
``peft`` package and keeps LoRAs as extra layers; fusing costs nothing per step.)

Key layouts read:

* kohya / A1111: ``lora_unet_<module path with _>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``;
  text encoders ``lora_te_`` (SD1.5), ``lora_te1_`` and ``lora_te2_`` (SDXL);
* diffusers / PEFT: ``unet.<module.path>.lora_A.weight`` / ``lora_B.weight`` (or ``.lora.down/.lora.up``),
  ``text_encoder.`` / ``text_encoder_2.``, with optional ``.alpha``.

A LoRA whose layers do not all match the base model's modules is an error naming the file (a LoRA for another base,
or a layout we do not read, such as LyCORIS LoHa/LoKr) rather than a silently partial effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from framefarm.cache import LruCache
from framefarm.errors import InputError
from framefarm.renderers.models.hashing import sha256_of
from framefarm.renderers.models.library import ModelEntry

_KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
                   "lora_te2_": "text_encoder_2"}
_DIFFUSERS_PREFIXES = {"unet.": "unet", "text_encoder.": "text_encoder", "text_encoder_2.": "text_encoder_2"}
# Parsed layers are float32 copies of the LoRA's factors (tens to hundreds of MB for an SDXL LoRA), kept per
# (LoRA file, base model); a job stacks a few.
LORAS_CACHED = 8
_parsed: LruCache[tuple[str, str], list[LoraLayer]] = LruCache(LORAS_CACHED, name="LoRA layers")


@dataclass(frozen=True)
class LoraLayer:
    """One LoRA layer: which module it changes, its two factors (float32, CPU) and its alpha/rank scale."""

    component: str
    module: str
    down: Any
    up: Any
    scale: float


@dataclass(frozen=True)
class LoraRequest:
    """A LoRA to fuse: the file, and the text-encoder and UNet weights from the prompt tag."""

    entry: ModelEntry
    te_weight: float
    unet_weight: float

    @property
    def key(self) -> tuple[str, float, float]:
        return (sha256_of(self.entry.path), self.te_weight, self.unet_weight)


def _module_names(model, component: str) -> dict[str, str]:
    """kohya-style names (dots → underscores) of a model's modules → their dotted names."""
    names = {}
    for name, _ in model.named_modules():
        if not name:
            continue
        names[name.replace(".", "_")] = name
        if component.startswith("text_encoder") and not name.startswith("text_model."):
            # transformers ≥ 5 dropped CLIP's text_model level; LoRAs were trained with it.
            names["text_model_" + name.replace(".", "_")] = name
    return names


def _dotted_names(model, component: str) -> dict[str, str]:
    names = {}
    for name, _ in model.named_modules():
        if name:
            names[name] = name
            if component.startswith("text_encoder") and not name.startswith("text_model."):
                names["text_model." + name] = name
    return names


def parse_lora(entry: ModelEntry, base, *, allow_pickle: bool = False) -> list[LoraLayer]:
    """The layers of a LoRA file, matched to ``base``'s modules (cached per file and base)."""
    return _parsed.get_or_load((sha256_of(entry.path), base.sha256), lambda: _read_lora(entry, base, allow_pickle))


def _read_lora(entry: ModelEntry, base, allow_pickle: bool) -> list[LoraLayer]:
    from framefarm.renderers.models.loader import read_state_dict

    state = read_state_dict(entry, allow_pickle=allow_pickle)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    unmatched: list[str] = []
    kohya_maps = {c: _module_names(m, c) for c, m in base.components.items() if hasattr(m, "named_modules")}
    dotted_maps = {c: _dotted_names(m, c) for c, m in base.components.items() if hasattr(m, "named_modules")}
    for key, tensor in state.items():
        target = _split_key(key, kohya_maps, dotted_maps)
        if target is None:
            unmatched.append(key)
            continue
        component, module, part = target
        groups.setdefault((component, module), {})[part] = tensor
    if unmatched:
        raise InputError("lora", entry.name, f"has {len(unmatched)} tensor(s) that match no layer of this "
                                             f"{base.family} model (e.g. {unmatched[0]!r})",
                         f"Use a LoRA trained for {base.family} in the kohya or diffusers layout "
                         "(LyCORIS LoHa/LoKr are not supported)")
    layers = []
    for (component, module), parts in sorted(groups.items()):
        if "down" not in parts or "up" not in parts:
            raise InputError("lora", entry.name, f"layer {module} lacks its down or up matrix")
        down, up = parts["down"].float(), parts["up"].float()
        rank = down.shape[0]
        alpha = float(parts["alpha"]) if "alpha" in parts else float(rank)
        layers.append(LoraLayer(component, module, down, up, alpha / rank))
    return layers


def _split_key(key: str, kohya_maps, dotted_maps) -> tuple[str, str, str] | None:
    """``(component, module dotted name, "down"|"up"|"alpha")`` for a LoRA tensor name, or None."""
    for prefix, component in _KOHYA_PREFIXES.items():
        if key.startswith(prefix) and component in kohya_maps:
            stem, _, suffix = key[len(prefix):].partition(".")
            part = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}.get(suffix)
            module = kohya_maps[component].get(stem)
            return (component, module, part) if module and part else None
    for prefix, component in _DIFFUSERS_PREFIXES.items():
        if key.startswith(prefix) and component in dotted_maps:
            rest = key[len(prefix):]
            for suffix, part in ((".lora_A.weight", "down"), (".lora_B.weight", "up"), (".lora.down.weight", "down"),
                                 (".lora.up.weight", "up"), (".alpha", "alpha")):
                if rest.endswith(suffix):
                    module = dotted_maps[component].get(rest[: -len(suffix)])
                    return (component, module, part) if module else None
    return None


def lora_delta(layer: LoraLayer, request: LoraRequest, weight):
    """What ``request`` adds to ``weight`` for ``layer``: ``strength · scale · up @ down``, in the weight's shape,
    dtype and device (:class:`framefarm.renderers.diffusers.patches.ModelPatches` fuses it and restores it)."""
    strength = request.unet_weight if layer.component == "unet" else request.te_weight
    delta = (layer.up.flatten(1) @ layer.down.flatten(1)) * (layer.scale * strength)
    if delta.numel() != weight.numel():
        raise InputError("lora", request.entry.name, f"layer {layer.module} has shape {tuple(delta.shape)}, the "
                                                     f"model's is {tuple(weight.shape)}")
    return delta.reshape(weight.shape).to(device=weight.device, dtype=weight.dtype)
