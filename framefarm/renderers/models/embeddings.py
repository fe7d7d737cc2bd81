"""Textual-inversion embeddings: files in the ``embeddings`` folder, used by writing their name in a prompt.

Formats read (the vectors are per text encoder: ``clip_l`` is SD1.5's encoder and SDXL's first, ``clip_g`` SDXL's
second):

* A1111 safetensors: ``emb_params`` ``[n, 768]`` (SD1.5), or ``clip_l`` ``[n, 768]`` + ``clip_g`` ``[n, 1280]`` (SDXL);
* diffusers ``learned_embeds.safetensors``: one key (the token) → ``[768]`` or ``[n, 768]``;
* A1111 ``.pt`` (``string_to_param``) and diffusers ``.bin``: pickles, only with the opt-in, via
  ``torch.load(weights_only=True)``.

Embeddings are not written into the tokenizer or the text encoder (which are cached and shared between jobs): the
prompt encoder splices the vectors into the token embeddings of the one call that uses them
(:mod:`framefarm.renderers.prompt_encode`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framefarm.cache import LruCache
from framefarm.errors import InputError
from framefarm.renderers.models.hashing import sha256_of
from framefarm.renderers.models.library import ModelEntry

# Embeddings are small (a few vectors each), but a worker that renders job after job meets many files.
EMBEDDINGS_CACHED = 64


@dataclass(frozen=True)
class Embedding:
    """An embedding's vectors by encoder (``clip_l``, ``clip_g``), each ``[n, width]`` float32 on the CPU."""

    name: str
    path: str
    vectors: dict[str, Any]

    @property
    def count(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])


_cache: LruCache[str, Embedding] = LruCache(EMBEDDINGS_CACHED, name="embeddings")


def load_embedding(entry: ModelEntry, *, allow_pickle: bool = False) -> Embedding:
    """Read an embedding file (cached by content)."""
    return _cache.get_or_load(sha256_of(entry.path), lambda: _read_embedding(entry, allow_pickle))


def _read_embedding(entry: ModelEntry, allow_pickle: bool) -> Embedding:
    import torch

    from framefarm.renderers.models.loader import read_state_dict

    state = read_state_dict(entry, allow_pickle=allow_pickle) if entry.format == "safetensors" else _read_pickled(
        entry, allow_pickle)
    if "clip_l" in state or "clip_g" in state:
        vectors = {k: state[k] for k in ("clip_l", "clip_g") if k in state}
    elif "emb_params" in state:
        vectors = {"clip_l": state["emb_params"]}
    elif len(state) == 1:
        vectors = {"clip_l": next(iter(state.values()))}
    else:
        raise InputError("embedding", entry.name, f"has keys {sorted(state)[:4]}, not an embedding's",
                         "Use an A1111 or diffusers textual-inversion file")
    vectors = {k: torch.as_tensor(v).detach().float().reshape(-1, torch.as_tensor(v).shape[-1])
               for k, v in vectors.items()}
    return Embedding(name=entry.stem, path=entry.path, vectors=vectors)


def _read_pickled(entry: ModelEntry, allow_pickle: bool) -> dict[str, Any]:
    from framefarm.renderers.models.loader import read_state_dict

    if not allow_pickle:
        read_state_dict(entry, allow_pickle=False)  # raises the refusal with its reason
    import torch

    data = torch.load(str(Path(entry.path)), map_location="cpu", weights_only=True)
    if isinstance(data, dict) and isinstance(data.get("string_to_param"), dict):
        params = data["string_to_param"]
        return {"emb_params": next(iter(params.values()))}
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if hasattr(v, "shape")}
    raise InputError("embedding", entry.name, "does not hold embedding vectors")
