"""A1111 hypernetworks (``<hypernet:name:0.6>`` in a prompt), applied to the attention keys and values of the UNet.

A hypernetwork is a set of small MLPs keyed by a context width (768 for SD1.5 cross-attention; 320/640/1280 for the
self-attention widths). In every attention layer whose context width has a pair of them, the context that feeds the
key projection becomes ``c + mlp_k(c) · strength`` and the one that feeds the value projection
``c + mlp_v(c) · strength`` (for self-attention the context is the layer's own input). Several hypernetworks chain in
prompt order, as A1111 applies them.

The files are pickles (``torch.save`` of a dict of settings and per-width state dicts), so they load only with the
user's opt-in (``model.allow_pickle``), and even then through torch's restricted unpickler (``weights_only=True``):
hypernetwork files hold only tensors, numbers, strings and lists, so a file that needs anything else is refused.

Hooking is done with a diffusers attention processor (:class:`HypernetworkAttnProcessor`) installed on the cached
UNet while a group of frames that names hypernetworks renders, and the UNet's own processors are put back
afterwards — so, as with LoRAs, a frame never depends on what an earlier job in the same worker used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from framefarm.cache import LruCache
from framefarm.errors import InputError
from framefarm.renderers.models.hashing import sha256_of
from framefarm.renderers.models.library import ModelEntry

# The activations A1111's hypernetwork trainer offers, by the name stored in the file. "linear" means none.
_ACTIVATIONS = ("linear", "relu", "leakyrelu", "elu", "swish", "tanh", "sigmoid", "gelu", "silu", "mish",
                "softsign", "hardtanh", "hardsigmoid", "selu", "celu", "prelu", "rrelu", "softplus")
_SETTING_KEYS = {"layer_structure", "activation_func", "is_layer_norm", "weight_initialization", "use_dropout",
                 "activate_output", "last_layer_dropout", "dropout_structure", "name", "step", "sd_checkpoint",
                 "sd_checkpoint_name", "optimizer_name", "optimizer_state_dict", "activation", "skip_connection",
                 "use_relu"}
# A hypernetwork is a few small MLPs; a job names one or two.
HYPERNETWORKS_CACHED = 8
_parsed: LruCache[str, Hypernetwork] = LruCache(HYPERNETWORKS_CACHED, name="hypernetworks")


@dataclass(frozen=True)
class HypernetworkRequest:
    """A hypernetwork to apply and its strength from the prompt tag."""

    entry: ModelEntry
    strength: float

    @property
    def key(self) -> tuple[str, float]:
        return (sha256_of(self.entry.path), self.strength)


@dataclass(frozen=True)
class Hypernetwork:
    """The MLP pairs of one file, by context width: ``{768: (mlp_k, mlp_v), …}`` (float32 ``torch.nn.Sequential``)."""

    name: str
    layers: dict[int, tuple[Any, Any]]


def _activation(name: str, entry: ModelEntry):
    import torch

    if name in (None, "linear"):
        return None
    if name == "swish":
        return torch.nn.Hardswish()  # A1111 maps its "swish" to Hardswish; files trained with it expect that
    for attr in dir(torch.nn.modules.activation):
        if attr.lower() == name and name in _ACTIVATIONS:
            return getattr(torch.nn.modules.activation, attr)()
    raise InputError("prompts", f"<hypernet:{entry.stem}>", f"uses the activation {name!r}, which is unknown",
                     f"Use a hypernetwork trained with one of: {', '.join(_ACTIVATIONS)}")


def _dropout_structure(settings: dict[str, Any], count: int) -> list[float]:
    # Dropout does nothing at inference, but it occupies a slot in the Sequential, so it shifts the indices of the
    # layers after it — and the state dict's keys (linear.0, linear.3, …) follow those indices.
    if isinstance(settings.get("dropout_structure"), list):
        return [float(x) for x in settings["dropout_structure"]]
    if not settings.get("use_dropout", False):
        return [0.0] * count
    values = [0.0] + [0.3] * (count - 3) + [0.3 if settings.get("last_layer_dropout", False) else 0.0, 0.0]
    return values[:count]


def _build_mlp(width: int, settings: dict[str, Any], state: dict[str, Any], entry: ModelEntry):
    """The Sequential A1111 builds for ``settings``, loaded with ``state`` (strict: a mismatch names the file)."""
    import torch

    structure = [float(x) for x in settings.get("layer_structure") or (1, 2, 1)]
    if len(structure) < 2 or structure[0] != 1 or structure[-1] != 1:
        raise InputError("prompts", f"<hypernet:{entry.stem}>", f"has layer_structure {structure}: it must start "
                         "and end with 1", "Use a hypernetwork file written by A1111's trainer")
    dropout = _dropout_structure(settings, len(structure))
    layers: list[torch.nn.Module] = []
    for i in range(len(structure) - 1):
        layers.append(torch.nn.Linear(int(width * structure[i]), int(width * structure[i + 1])))
        last = i >= len(structure) - 2
        if not (last and not settings.get("activate_output", False)):
            activation = _activation(settings.get("activation_func") or "linear", entry)
            if activation is not None:
                layers.append(activation)
        if settings.get("is_layer_norm", False):
            layers.append(torch.nn.LayerNorm(int(width * structure[i + 1])))
        if i + 1 < len(dropout) and dropout[i + 1] > 0:
            layers.append(torch.nn.Dropout(p=dropout[i + 1]))
    mlp = torch.nn.Sequential(*layers)
    stripped = {k.removeprefix("linear."): v for k, v in state.items()}
    try:
        mlp.load_state_dict(stripped, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError("prompts", f"<hypernet:{entry.stem}>", f"({entry.path}) does not match its own settings "
                         f"for width {width}: {first}", "The file is damaged or not an A1111 hypernetwork") from None
    return mlp.float().eval().requires_grad_(False)


def load_hypernetwork(entry: ModelEntry, *, allow_pickle: bool) -> Hypernetwork:
    """Read a hypernetwork file (cached by content hash). Refused without the pickle opt-in."""
    field, value = "prompts", f"<hypernet:{entry.stem}>"
    if not allow_pickle:
        raise InputError(field, value, f"names {entry.path}, a pickle file (hypernetworks are always pickles): "
                         "refused, because unpickling a file can run code",
                         "If you trust the file, set model.allow_pickle = true (it is then read with torch's "
                         "restricted weights-only loader)")
    return _parsed.get_or_load(sha256_of(entry.path), lambda: _read_hypernetwork(entry, field, value))


def _read_hypernetwork(entry: ModelEntry, field: str, value: str) -> Hypernetwork:
    import pickle

    import torch

    try:
        data = torch.load(entry.path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise InputError(field, value, f"({entry.path}) could not be read with weights_only=True: "
                         f"{str(exc).splitlines()[0]}", "Remove the file or replace it with a trusted copy") from None
    if not isinstance(data, dict):
        raise InputError(field, value, f"({entry.path}) does not hold a hypernetwork (a dict)")
    settings = {k: v for k, v in data.items() if k in _SETTING_KEYS}
    layers = {}
    for width, pair in data.items():
        if not isinstance(width, int):
            continue
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(s, dict) for s in pair)):
            raise InputError(field, value, f"({entry.path}) has a malformed entry for width {width}")
        layers[width] = (_build_mlp(width, settings, pair[0], entry), _build_mlp(width, settings, pair[1], entry))
    if not layers:
        raise InputError(field, value, f"({entry.path}) holds no layers", "Use an A1111 hypernetwork file")
    return Hypernetwork(name=entry.stem, layers=layers)


class HypernetworkAttnProcessor:
    """Scaled-dot-product attention whose key and value contexts first pass through hypernetwork MLPs.

    With no MLP for a layer's context width it computes exactly what diffusers' ``AttnProcessor2_0`` computes.
    """

    def __init__(self, networks: list[tuple[Hypernetwork, float]]) -> None:
        self.networks = networks

    def _contexts(self, context):
        key_context = value_context = context
        for network, strength in self.networks:
            pair = network.layers.get(int(context.shape[-1]))
            if pair is None:
                continue
            mlp_k, mlp_v = (m.to(device=context.device, dtype=context.dtype) for m in pair)
            key_context = key_context + mlp_k(key_context) * strength
            value_context = value_context + mlp_v(value_context) * strength
        return key_context, value_context

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **_):
        import torch.nn.functional as F

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (hidden_states.shape if encoder_hidden_states is None
                                          else encoder_hidden_states.shape)
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key_context, value_context = self._contexts(encoder_hidden_states)
        key, value = attn.to_k(key_context), attn.to_v(value_context)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                                       is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states.to(query.dtype)))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def hypernetwork_processors(original: dict[str, Any], networks: list[tuple[Hypernetwork, float]]) -> dict[str, Any]:
    """A UNet's attention processors with ``networks`` hooked in: only the spatial transformer blocks' attention
    layers, where A1111 applies them (never an AnimateDiff motion module's temporal attention)."""
    processor = HypernetworkAttnProcessor(networks)
    return {name: (processor if ".transformer_blocks." in name and "motion_modules." not in name else current)
            for name, current in original.items()}
