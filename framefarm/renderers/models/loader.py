"""Loading models offline, and keeping them loaded: one base model (or a few) per worker process.

Sources a job may name (``model.checkpoint``):

* a single-file checkpoint (``.safetensors``; a pickle only with ``model.allow_pickle``) from the models folder or
  an absolute path: the weights are converted with diffusers' own LDM → diffusers converters, into models built
  from framefarm's config skeletons completed with the file's shapes (:mod:`.skeleton`) — the hub is never asked;
* a diffusers folder (``model_index.json``), from the models folder or an absolute path;
* a hub id (``org/name``): loaded only from the local Hugging Face cache (``local_files_only=True``): framefarm
  never downloads at render time. Download it beforehand (``huggingface-cli download org/name``) where online.

Loaded bases are cached per process (``FRAMEFARM_MODEL_CACHE`` bases, default 1) and reused by every task in the
process. LoRAs are fused into and restored out of the cached weights (:mod:`.lora`), ControlNets and VAEs are cached
beside the base, so switching LoRA, ControlNet or VAE never reloads the base model. Each base has a lock: tasks that
run in threads of one worker take turns on it (the accelerator is the scarce resource anyway), which also keeps a
LoRA fused for one task from leaking into another's frames.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framefarm.errors import InputError, RenderError
from framefarm.renderers.models.detect import SD15, SDXL, SUPPORTED_BASES, detect_weights
from framefarm.renderers.models.hashing import sha256_of
from framefarm.renderers.models.library import PICKLE_REASON, ModelEntry
from framefarm.renderers.models.safetensors_io import load_tensors

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}
CACHE_ENV = "FRAMEFARM_MODEL_CACHE"
DEVICE_ENV = "FRAMEFARM_DEVICE"


def go_offline() -> None:
    """Make every hub client offline for this process (set before diffusers/transformers are imported)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def quiet_libraries() -> None:
    """No per-component progress bars from diffusers/transformers: a render's progress is framefarm's to show."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


go_offline()


# ---------------------------------------------------------------------------------------------------------------
# Devices and dtypes


def resolve_device() -> str:
    """``$FRAMEFARM_DEVICE``, else ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    explicit = os.environ.get(DEVICE_ENV)
    if explicit:
        return explicit
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(name: str, device: str):
    """``auto`` is float16 on a GPU and float32 on a CPU (CPUs are slow, not more exact, in half precision)."""
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


# ---------------------------------------------------------------------------------------------------------------
# Reading weights


def read_state_dict(entry: ModelEntry, *, allow_pickle: bool) -> dict[str, Any]:
    """All tensors of a weights file. Pickles only with the opt-in, and then only with ``weights_only=True``."""
    path = Path(entry.path)
    if entry.format == "safetensors":
        return load_tensors(path)
    if entry.format != "pickle":
        raise RenderError(f"{path} is a {entry.format} model, not a weights file")
    if not allow_pickle:
        raise InputError("model file", str(path), f"is refused: {PICKLE_REASON}")
    import pickle

    import torch

    try:
        # weights_only=True: torch's restricted unpickler, which rebuilds tensors and plain containers only and
        # refuses any other global (the arbitrary-code part of pickle).
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise InputError("model file", str(path), f"could not be loaded with weights_only=True: {exc}",
                         "Convert it to .safetensors with a trusted tool, or remove it") from None
    while isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError("model file", str(path), "does not hold a state dict")
    return {k: v for k, v in state.items() if hasattr(v, "shape")}


def _shapes(state: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _load_into(model, state: dict[str, Any], *, what: str, path: str) -> None:
    """Load converted weights strictly: a file missing weights is an error naming the file, not random pixels."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith("position_ids")}
    missing = [k for k in own if k not in state and not k.endswith("position_ids")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise InputError("model file", path,
                         f"its {what} weights do not match the detected architecture "
                         f"({len(missing)} missing, e.g. {missing[:2]}; {len(unexpected)} unexpected, "
                         f"e.g. {unexpected[:2]})",
                         "The file may be damaged or of an unsupported variant")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise InputError("model file", path, f"{what} weight {key} has shape {tuple(value.shape)}, "
                                                  f"expected {tuple(own[key].shape)}")
    model.load_state_dict(state, strict=False, assign=True)


def _empty(cls, config: dict[str, Any]):
    """A model with its parameters on the meta device (no random init of GBs that are overwritten anyway)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return cls.from_config(config) if hasattr(cls, "from_config") else cls(config)


# ---------------------------------------------------------------------------------------------------------------
# Base models


@dataclass
class LoadedBase:
    """A loaded SD1.5 or SDXL model: its components, and the state framefarm keeps on them.

    Attributes:
        key: cache key (content hash, dtype, device).
        family: ``SD1.5`` or ``SDXL``.
        sha256: content hash of the checkpoint (file or folder).
        components: ``unet``, ``vae``, ``text_encoder``, ``tokenizer`` (+ ``text_encoder_2``, ``tokenizer_2``).
        scheduler_config: the family's scheduler config (samplers are built from it per call).
        lock: held while a task renders with this base (LoRA fusing, hypernetwork hooks).
        patches: what is patched into the components (LoRAs, hypernetworks): the
            :class:`framefarm.renderers.diffusers.patches.ModelPatches` made on first use.
    """

    key: tuple[str, ...]
    family: str
    sha256: str
    components: dict[str, Any]
    scheduler_config: dict[str, Any]
    device: str
    dtype: Any
    lock: threading.RLock = field(default_factory=threading.RLock)
    patches: Any = None

    @property
    def unet(self):
        return self.components["unet"]

    @property
    def vae(self):
        return self.components["vae"]


_bases: OrderedDict[tuple[str, ...], LoadedBase] = OrderedDict()
_controlnets: OrderedDict[tuple[str, ...], Any] = OrderedDict()
_vaes: OrderedDict[tuple[str, ...], Any] = OrderedDict()
_cache_lock = threading.Lock()


def _cache_size() -> int:
    try:
        return max(1, int(os.environ.get(CACHE_ENV, "1")))
    except ValueError:
        return 1


def clear_cache() -> None:
    """Drop every cached model (tests use it to prove loading works from scratch)."""
    with _cache_lock:
        _bases.clear()
        _controlnets.clear()
        _vaes.clear()


def load_base(entry: ModelEntry | str, *, dtype_name: str = "auto", allow_pickle: bool = False) -> LoadedBase:
    """The base model for a library entry (or a hub id), from the process cache or loaded now."""
    quiet_libraries()
    device = resolve_device()
    dtype = resolve_dtype(dtype_name, device)
    if isinstance(entry, str):
        return _load_hub(entry, device, dtype)
    key = (sha256_of(entry.path), str(dtype), device)
    with _cache_lock:
        if key in _bases:
            _bases.move_to_end(key)
            return _bases[key]
        if entry.format == "diffusers":
            base = _load_diffusers(Path(entry.path), key, device, dtype)
        else:
            base = _load_single_file(entry, key, device, dtype, allow_pickle=allow_pickle)
        _bases[key] = base
        while len(_bases) > _cache_size():
            _bases.popitem(last=False)
        return base


def _load_single_file(entry: ModelEntry, key, device: str, dtype, *, allow_pickle: bool) -> LoadedBase:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from framefarm.renderers.models import skeleton as sk
    from framefarm.renderers.models.tokenizer import clip_tokenizer

    # 1. Read the weights and tell the family from them (a pickle's family is only known now).
    state = read_state_dict(entry, allow_pickle=allow_pickle)
    shapes = _shapes(state)
    detection = detect_weights(list(state), shapes.get)
    if detection.kind != "checkpoint" or detection.base not in SUPPORTED_BASES:
        raise InputError("model.checkpoint", entry.name,
                         f"is a {detection.base} {detection.kind}{': ' + detection.note if detection.note else ''}",
                         "Use an SD1.5 or SDXL checkpoint")
    family = detection.base
    if detection.note == "inpainting":
        raise InputError("model.checkpoint", entry.name, "is an inpainting model (9-channel UNet)",
                         "Use a regular SD1.5 or SDXL checkpoint for txt2img/img2img")

    # 2. Configs: skeleton + shapes.
    try:
        if family == SD15:
            text_cfgs = {"text_encoder": sk.clip_config(shapes, family, "text_encoder",
                                                        prefix="cond_stage_model.transformer.text_model.")}
            unet_cfg = sk.unet_config(shapes, family)
        else:
            text_cfgs = {
                "text_encoder": sk.clip_config(shapes, family, "text_encoder",
                                               prefix="conditioner.embedders.0.transformer.text_model."),
                "text_encoder_2": sk.open_clip_config(shapes, family, "text_encoder_2",
                                                      prefix="conditioner.embedders.1.model."),
            }
            unet_cfg = sk.unet_config(shapes, family, pooled_dim=text_cfgs["text_encoder_2"]["projection_dim"])
        vae_cfg = sk.vae_config(shapes, family)
    except KeyError as exc:
        raise InputError("model.checkpoint", entry.name, f"lacks the tensor {exc.args[0]}",
                         "The file is incomplete or of an unsupported variant") from None

    # 3. Build empty models and load the converted weights strictly.
    unet = _empty(UNet2DConditionModel, unet_cfg)
    _load_into(unet, convert_ldm_unet_checkpoint(state, dict(unet.config)), what="UNet", path=entry.path)
    vae = _empty(AutoencoderKL, vae_cfg)
    _load_into(vae, convert_ldm_vae_checkpoint(state, dict(vae.config)), what="VAE", path=entry.path)
    components: dict[str, Any] = {"unet": unet, "vae": vae}
    text = _empty(CLIPTextModel, CLIPTextConfig(**_clip_kwargs(text_cfgs["text_encoder"])))
    _load_into(text, _strip_text_model(text, convert_ldm_clip_checkpoint(state)), what="text encoder",
               path=entry.path)
    components["text_encoder"] = text
    components["tokenizer"] = clip_tokenizer()
    if family == SDXL:
        text2 = _empty(CLIPTextModelWithProjection, CLIPTextConfig(**_clip_kwargs(text_cfgs["text_encoder_2"])))
        converted = convert_open_clip_checkpoint(text2, state, prefix="conditioner.embedders.1.model.")
        _load_into(text2, _strip_text_model(text2, converted), what="text encoder 2", path=entry.path)
        components["text_encoder_2"] = text2
        components["tokenizer_2"] = clip_tokenizer(pad_token="!")
    del state
    return _finish(key, family, components, sk.skeleton(family, "scheduler"), device, dtype)


def _clip_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("architectures", "model_type")}


def _strip_text_model(model, state: dict[str, Any]) -> dict[str, Any]:
    """transformers ≥ 5 dropped the ``text_model.`` level of CLIP's keys; match whichever the installed one uses."""
    if hasattr(model, "text_model"):
        return state
    return {k.removeprefix("text_model."): v for k, v in state.items()}


def _place(model, device: str, dtype):
    """Move a model to the device and dtype (a no-op cast is skipped: diffusers warns about it)."""
    if model.dtype != dtype:
        model.to(dtype=dtype)
    model.to(device=device)
    model.eval()
    model.requires_grad_(False)
    return model


def _finish(key, family: str, components: dict[str, Any], scheduler_config: dict[str, Any], device: str,
            dtype) -> LoadedBase:
    for name, component in components.items():
        if hasattr(component, "to") and not name.startswith("tokenizer"):
            _place(component, device, dtype)
    return LoadedBase(key=key, family=family, sha256=key[0], components=components,
                      scheduler_config=dict(scheduler_config), device=device, dtype=dtype)


def _load_diffusers(path: Path, key, device: str, dtype) -> LoadedBase:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from framefarm.renderers.models.library import detect_diffusers_folder

    detection = detect_diffusers_folder(path)
    if detection.kind != "checkpoint" or detection.base not in SUPPORTED_BASES:
        raise InputError("model.checkpoint", str(path), f"is a {detection.base} {detection.kind}",
                         "Use an SD1.5 or SDXL diffusers folder")
    cls = StableDiffusionXLPipeline if detection.base == SDXL else StableDiffusionPipeline
    extra = {} if detection.base == SDXL else {"safety_checker": None, "feature_extractor": None,
                                               "requires_safety_checker": False}
    try:
        pipe = cls.from_pretrained(str(path), local_files_only=True, use_safetensors=True, **extra)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise InputError("model.checkpoint", str(path), f"could not be loaded as a diffusers folder: {exc}",
                         "Check the folder holds model_index.json and every component's safetensors") from None
    names = ["unet", "vae", "text_encoder", "tokenizer"] + (["text_encoder_2", "tokenizer_2"]
                                                            if detection.base == SDXL else [])
    components = {name: getattr(pipe, name) for name in names}
    return _finish(key, detection.base, components, dict(pipe.scheduler.config), device, dtype)


def _load_hub(repo_id: str, device: str, dtype) -> LoadedBase:
    """A hub id, from the local Hugging Face cache only."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        raise InputError("model.checkpoint", repo_id, "is not a file in the models folder, and not in the local "
                                                      "Hugging Face cache (framefarm never downloads at render time)",
                         f"Download it first where you are online: huggingface-cli download {repo_id}") from None
    key = (sha256_of(folder), str(dtype), device)
    with _cache_lock:
        if key not in _bases:
            _bases[key] = _load_diffusers(folder, key, device, dtype)
            while len(_bases) > _cache_size():
                _bases.popitem(last=False)
        return _bases[key]


# ---------------------------------------------------------------------------------------------------------------
# ControlNet and VAE


def load_controlnet(entry: ModelEntry, base: LoadedBase, *, allow_pickle: bool = False):
    """A ControlNet for ``base`` (cached; its family must match the base's)."""
    key = (sha256_of(entry.path), base.key[0], str(base.dtype), base.device)
    with _cache_lock:
        if key in _controlnets:
            _controlnets.move_to_end(key)
            return _controlnets[key]
        model = _build_controlnet(entry, base, allow_pickle=allow_pickle)
        _controlnets[key] = _place(model, base.device, base.dtype)
        while len(_controlnets) > 4 * _cache_size():
            _controlnets.popitem(last=False)
        return model


def _build_controlnet(entry: ModelEntry, base: LoadedBase, *, allow_pickle: bool):
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    from framefarm.renderers.models import skeleton as sk

    if entry.base not in (base.family, "?"):
        raise InputError("controlnet.model", entry.name, f"is an {entry.base} ControlNet, the checkpoint is "
                                                         f"{base.family}", f"Use a {base.family} ControlNet")
    if entry.format == "diffusers":
        try:
            return ControlNetModel.from_pretrained(entry.path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError("controlnet.model", entry.path, f"could not be loaded: {exc}") from None
    state = read_state_dict(entry, allow_pickle=allow_pickle)
    prefix = "control_model." if any(k.startswith("control_model.") for k in state) else ""
    if any(k.startswith("controlnet_cond_embedding.") for k in state):
        raise InputError("controlnet.model", entry.name, "is a diffusers-layout single file",
                         "Put it in a folder with its config.json (a diffusers ControlNet folder)")
    shapes = _shapes(state)
    try:
        config = sk.controlnet_config(shapes, base.family, base_unet=dict(base.unet.config), prefix=prefix)
    except KeyError as exc:
        raise InputError("controlnet.model", entry.name, f"lacks the tensor {exc.args[0]}") from None
    model = _empty(ControlNetModel, config)
    body = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    _load_into(model, convert_controlnet_checkpoint(body, dict(model.config)), what="ControlNet", path=entry.path)
    return model


def load_vae(entry: ModelEntry, base: LoadedBase, *, allow_pickle: bool = False):
    """A standalone VAE (``model.vae``) in the base's dtype and device (cached)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from framefarm.renderers.models import skeleton as sk

    key = (sha256_of(entry.path), base.family, str(base.dtype), base.device)
    with _cache_lock:
        if key in _vaes:
            return _vaes[key]
        if entry.format == "diffusers":
            vae = AutoencoderKL.from_pretrained(entry.path, local_files_only=True)
        else:
            state = read_state_dict(entry, allow_pickle=allow_pickle)
            prefix = next((p for p in ("first_stage_model.", "vae.") if any(k.startswith(p) for k in state)), "")
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            try:
                config = sk.vae_config(_shapes(state), base.family, prefix="")
            except KeyError as exc:
                raise InputError("model.vae", entry.name, f"lacks the tensor {exc.args[0]}") from None
            vae = _empty(AutoencoderKL, config)
            if any(k.startswith("encoder.down_blocks.") for k in state):
                converted = state
            else:
                converted = convert_ldm_vae_checkpoint(state, dict(vae.config))
            _load_into(vae, converted, what="VAE", path=entry.path)
        _vaes[key] = _place(vae, base.device, base.dtype)
        while len(_vaes) > 2 * _cache_size():
            _vaes.popitem(last=False)
        return vae
