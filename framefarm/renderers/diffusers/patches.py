"""One object owning what framefarm patches into a loaded base model: LoRAs fused into weights, hypernetwork
attention processors, and the fused attention projections that must copy the LoRA-patched weights.

Why one object: the first version kept this state as string keys on the base, and each kind called its own subset
of the steps — the Deforum chain fused LoRAs but never refreshed the fused projections (its frames ignored the LoRA
with the default speed levers) and never applied hypernetworks; AnimateDiff's motion UNet, a copy of the base UNet,
never saw either. Here :meth:`ModelPatches.apply` is the only way in, and it always restores, fuses, refreshes and
hooks in that order, on the base UNet *and* on every UNet derived from it (:meth:`ModelPatches.derive_unet`).

Exactness: before a weight is first patched its original bits are kept; switching to another set of networks copies
the originals back first, so a frame never depends on which networks an earlier job of the same process used.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

from framefarm.errors import InputError
from framefarm.renderers.accel import refresh_fused_projections

_create_lock = threading.Lock()


@dataclass(frozen=True)
class Networks:
    """The extra networks a group of frames renders with, in prompt order.

    Attributes:
        loras: ``(name, text-encoder weight, UNet weight)`` of each ``<lora:…>`` tag.
        hypernets: ``(name, strength)`` of each ``<hypernet:…>`` tag.
    """

    loras: tuple[tuple[str, float, float], ...] = ()
    hypernets: tuple[tuple[str, float], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.loras or self.hypernets)


NO_NETWORKS = Networks()


def patches_of(base) -> ModelPatches:
    """The base's :class:`ModelPatches`, made on first use (the loader knows nothing of patches)."""
    with _create_lock:
        if base.patches is None:
            base.patches = ModelPatches(base)
        return base.patches


class ModelPatches:
    """The LoRA / hypernetwork / fused-projection state of one loaded base and the UNets derived from it.

    Every method expects the caller to hold ``base.lock`` (the weights are shared by the tasks of a process).
    """

    def __init__(self, base) -> None:
        self._base = weakref.ref(base)
        self.loras: tuple = ()  # keys of the LoRAs fused now
        self.hypernetworks: tuple = ()  # keys of the hypernetworks hooked now
        self._derived: weakref.WeakSet = weakref.WeakSet()  # e.g. AnimateDiff's motion UNets
        self._backups: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → {module: original weight}
        self._processors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # unet → its own processors
        self._fused_for: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → LoRA keys its copies hold

    @property
    def base(self):
        return self._base()

    def unets(self) -> list[Any]:
        """The base UNet and every live UNet derived from it."""
        return [self.base.unet, *self._derived]

    # -- public -----------------------------------------------------------------------------------------------------

    def apply(self, library, networks: Networks, *, allow_pickle: bool) -> None:
        """Make the models compute with exactly ``networks`` (none: the checkpoint as loaded)."""
        from framefarm.renderers.models.hypernetwork import HypernetworkRequest
        from framefarm.renderers.models.lora import LoraRequest

        if networks and library is None:
            name = (networks.loras or networks.hypernets)[0][0]
            raise InputError("prompts", name, "names a LoRA or hypernetwork, which needs a models folder",
                             "Set model.models_dir to the folder holding it")
        loras = tuple(LoraRequest(library.find("lora", name, field="prompts <lora:…>"), te, unet)
                      for name, te, unet in networks.loras)
        hypernets = tuple(HypernetworkRequest(library.find("hypernetwork", name, field="prompts <hypernet:…>"), s)
                          for name, s in networks.hypernets)
        self._fuse_loras(loras, allow_pickle=allow_pickle)
        self._refresh_fused()
        self._hook_hypernetworks(hypernets, allow_pickle=allow_pickle)

    def reset(self) -> None:
        """The checkpoint as loaded: no LoRA, no hypernetwork."""
        self.apply(None, NO_NETWORKS, allow_pickle=False)

    def track_fused(self, model) -> None:
        """``model`` carries fused projections (copies of ``to_q/k/v``) made while these LoRAs were fused."""
        self._fused_for.setdefault(model, self.loras)

    def derive_unet(self, build):
        """``build(base UNet)`` → a UNet made from the base's weights (a copy), built from the unpatched checkpoint
        and kept in step with every later :meth:`apply`."""
        self.reset()
        unet = build(self.base.unet)
        self._derived.add(unet)
        return unet

    # -- steps --------------------------------------------------------------------------------------------------------

    def _targets(self, component: str) -> list[Any]:
        return self.unets() if component == "unet" else [self.base.components[component]]

    def _fuse_loras(self, requests, *, allow_pickle: bool) -> None:
        import torch

        from framefarm.renderers.models.lora import lora_delta, parse_lora

        wanted = tuple(r.key for r in requests)
        if wanted == self.loras:
            return
        with torch.no_grad():
            # 1. Every patched weight back to its original bits.
            for model, saved in list(self._backups.items()):
                for module, original in saved.items():
                    model.get_submodule(module).weight.copy_(original)
            self.loras = ()
            # 2. The requested LoRAs, in order.
            for request in requests:
                for layer in parse_lora(request.entry, self.base, allow_pickle=allow_pickle):
                    for model in self._targets(layer.component):
                        try:
                            weight = model.get_submodule(layer.module).weight
                        except AttributeError:
                            raise InputError("lora", request.entry.name,
                                             f"changes {layer.module}, which a {type(model).__name__} lacks",
                                             "Use a LoRA of the checkpoint's family") from None
                        saved = self._backups.setdefault(model, {})
                        if layer.module not in saved:
                            saved[layer.module] = weight.detach().clone()
                        weight.add_(lora_delta(layer, request, weight))
        self.loras = wanted

    def _refresh_fused(self) -> None:
        for model, fused_for in list(self._fused_for.items()):
            if fused_for != self.loras:
                refresh_fused_projections(model)
                self._fused_for[model] = self.loras

    def _hook_hypernetworks(self, requests, *, allow_pickle: bool) -> None:
        from framefarm.renderers.models.hypernetwork import hypernetwork_processors, load_hypernetwork

        wanted = tuple(r.key for r in requests)
        if wanted == self.hypernetworks:
            return
        for unet, original in list(self._processors.items()):
            unet.set_attn_processor(original)
        self._processors.clear()
        self.hypernetworks = ()
        if requests:
            networks = [(load_hypernetwork(r.entry, allow_pickle=allow_pickle), r.strength) for r in requests]
            for unet in self.unets():
                original = dict(unet.attn_processors)
                unet.set_attn_processor(hypernetwork_processors(original, networks))
                self._processors[unet] = original
        self.hypernetworks = wanted
