"""Prompt text → text-encoder conditioning, the A1111 way: weights, 75-token chunks, embeddings, clip skip.

Steps for one prompt (A1111's ``FrozenCLIPEmbedderWithCustomWords``, reimplemented from its documented behaviour):

1. Split the text into runs of equal attention weight (:func:`~framefarm.renderers.prompt_weights.parse_attention`).
2. Tokenize each run; a textual-inversion embedding's name becomes that many placeholder positions.
3. Fill chunks of 75 tokens; a chunk that would overflow breaks after its last comma when that comma is within the
   last 20 tokens; ``BREAK`` starts a new chunk; an embedding never straddles two chunks. Each chunk becomes
   ``<start> + 75 tokens + <end>`` (77), padded with ``<end>`` (CLIP-L) or ``!`` after the first ``<end>`` (OpenCLIP).
4. Encode each chunk alone (batch-size independent), with the embedding vectors spliced into the token embeddings by
   a forward hook (nothing is written into the shared, cached tokenizer or encoder).
5. Take the last layer (SD1.5, clip skip 1), or layer ``-clip_skip`` through the final layer norm (SD1.5, clip skip
   ≥ 2), or layer ``-(clip_skip + 1)`` without it (SDXL, whose default is the penultimate layer).
6. Multiply each token's vector by its weight, then rescale so the chunk's mean is unchanged.
7. Concatenate the chunks (77·k tokens). SDXL: the two encoders' outputs side by side; the pooled vector is
   OpenCLIP's projected output of the first chunk.

Prompts encoded together for one batch are padded to the same number of chunks with empty chunks, as A1111 does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from framefarm.errors import InputError
from framefarm.renderers import host_copies
from framefarm.renderers.models.detect import SDXL
from framefarm.renderers.prompt_weights import parse_attention

CHUNK = 75
COMMA_BACKTRACK = 20
PLACEHOLDER_ID = 0  # any non-<end> id: the vector at an embedding's position is replaced anyway


@dataclass(frozen=True)
class _Item:
    """One token position: a token id, or vector ``index`` of ``embedding``; with its attention weight."""

    token: int
    weight: float
    embedding: str | None = None
    index: int = 0


@dataclass(frozen=True)
class Conditioning:
    """The encoder output for one prompt: ``embeds`` ``[1, 77·k, width]``, ``pooled`` ``[1, P]`` (SDXL only)."""

    embeds: Any
    pooled: Any | None
    chunks: int


class PromptEncoder:
    """Encodes prompts for one loaded base model with a set of embeddings available by name.

    Args:
        base: the loaded model (:class:`~framefarm.renderers.models.loader.LoadedBase`).
        embeddings: name → :class:`~framefarm.renderers.models.embeddings.Embedding` usable in prompts.
        clip_skip: A1111's clip skip (1 = last layer).
    """

    def __init__(self, base, embeddings: dict[str, Any], clip_skip: int = 1) -> None:
        self.base = base
        self.family = base.family
        self.clip_skip = clip_skip
        self.embeddings = embeddings
        self.encoders = [("clip_l", base.components["text_encoder"], base.components["tokenizer"])]
        if self.family == SDXL:
            self.encoders.append(("clip_g", base.components["text_encoder_2"], base.components["tokenizer_2"]))
        names = sorted(embeddings, key=len, reverse=True)
        self._embedding_pattern = (re.compile(r"(?<![\w])(" + "|".join(re.escape(n) for n in names) + r")(?![\w])",
                                              re.IGNORECASE) if names else None)
        self._by_lower = {n.lower(): n for n in names}
        self._cache: dict[tuple[str, int], Conditioning] = {}

    # -- public ---------------------------------------------------------------------------------------------------

    def encode_many(self, texts: list[str]) -> list[Conditioning]:
        """Encode prompts that will share a batch: each padded to the largest chunk count among them."""
        encoded = [self.encode(t) for t in texts]
        most = max(c.chunks for c in encoded)
        return [self.encode(t, chunks=most) if c.chunks < most else c for t, c in zip(texts, encoded)]

    def encode(self, text: str, *, chunks: int | None = None) -> Conditioning:
        """Encode one prompt (cached per encoder instance), padded with empty chunks to ``chunks``."""
        import torch

        key = (text, chunks or 0)
        if key in self._cache:
            return self._cache[key]
        per_encoder, pooled = [], None
        with torch.inference_mode():
            for name, model, tokenizer in self.encoders:
                token_chunks = self._chunks(text, name, tokenizer)
                while chunks is not None and len(token_chunks) < chunks:
                    token_chunks.append(self._pad_chunk(tokenizer))
                outputs = [self._encode_chunk(chunk, name, model, tokenizer) for chunk in token_chunks]
                per_encoder.append(torch.cat([o[0] for o in outputs], dim=1))
                if name == "clip_g":
                    pooled = outputs[0][1]
        embeds = per_encoder[0] if len(per_encoder) == 1 else torch.cat(per_encoder, dim=-1)
        result = Conditioning(embeds=embeds, pooled=pooled, chunks=embeds.shape[1] // (CHUNK + 2))
        self._cache[key] = result
        return result

    # -- tokens ---------------------------------------------------------------------------------------------------

    def _items(self, text: str, weight: float, encoder: str, tokenizer) -> list[list[_Item]]:
        """Token items of one weighted run; each embedding is one group (kept whole in a chunk)."""
        groups: list[list[_Item]] = []
        pieces = [text] if self._embedding_pattern is None else self._embedding_pattern.split(text)
        for index, piece in enumerate(pieces):
            if index % 2 == 1:  # a matched embedding name
                embedding = self.embeddings[self._by_lower[piece.lower()]]
                if encoder not in embedding.vectors:
                    raise InputError("prompt", piece, f"is an embedding without vectors for {encoder} "
                                                      f"(it was trained for another base than {self.family})",
                                     f"Use a {self.family} embedding, or rename the file")
                count = int(embedding.vectors[encoder].shape[0])
                groups.append([_Item(PLACEHOLDER_ID, weight, embedding.name, i) for i in range(count)])
            elif piece:
                ids = tokenizer(piece, add_special_tokens=False, truncation=False)["input_ids"]
                groups.extend([[_Item(int(t), weight)] for t in ids])
        return groups

    def _chunks(self, text: str, encoder: str, tokenizer) -> list[list[_Item]]:
        comma = tokenizer.convert_tokens_to_ids(",</w>")
        end = tokenizer.eos_token_id
        chunks: list[list[_Item]] = []
        chunk: list[_Item] = []
        last_comma = -1

        def close(current: list[_Item]) -> None:
            chunks.append(current + [_Item(end, 1.0)] * (CHUNK - len(current)))

        for run in parse_attention(text):
            if run.is_break:
                close(chunk)
                chunk, last_comma = [], -1
                continue
            for group in self._items(run.text, run.weight, encoder, tokenizer):
                if len(group) == 1 and group[0].embedding is None and group[0].token == comma:
                    last_comma = len(chunk)
                elif (len(chunk) + len(group) > CHUNK and last_comma != -1
                      and len(chunk) - last_comma <= COMMA_BACKTRACK):
                    moved = chunk[last_comma + 1:]
                    close(chunk[:last_comma + 1])
                    chunk, last_comma = moved, -1
                if len(chunk) + len(group) > CHUNK:
                    close(chunk)
                    chunk, last_comma = [], -1
                if len(group) > CHUNK:
                    raise InputError("prompt", group[0].embedding, f"has {len(group)} vectors, more than a "
                                                                   f"{CHUNK}-token chunk holds")
                chunk.extend(group)
        if chunk or not chunks:
            close(chunk)
        return chunks

    def _pad_chunk(self, tokenizer) -> list[_Item]:
        return [_Item(tokenizer.eos_token_id, 1.0)] * CHUNK

    # -- encoding -------------------------------------------------------------------------------------------------

    def _encode_chunk(self, chunk: list[_Item], encoder: str, model, tokenizer):
        import torch

        ids = [tokenizer.bos_token_id] + [item.token for item in chunk] + [tokenizer.eos_token_id]
        pad = tokenizer.pad_token_id
        if pad != tokenizer.eos_token_id:  # OpenCLIP: everything after the first <end> is padding
            first_end = ids.index(tokenizer.eos_token_id)
            ids = ids[: first_end + 1] + [pad] * (len(ids) - first_end - 1)
        weights = torch.tensor([1.0] + [item.weight for item in chunk] + [1.0])
        replacements = [(position + 1, self.embeddings[item.embedding].vectors[encoder][item.index])
                        for position, item in enumerate(chunk) if item.embedding is not None]
        input_ids = host_copies.to_device(torch.tensor([ids]), model.device)  # no stream sync at a batch's start

        handle = None
        if replacements:
            def splice(module, inputs, output):
                output = output.clone()
                for position, vector in replacements:
                    output[0, position] = vector.to(device=output.device, dtype=output.dtype)
                return output

            handle = model.get_input_embeddings().register_forward_hook(splice)
        try:
            out = model(input_ids, output_hidden_states=True)
        finally:
            if handle is not None:
                handle.remove()

        if self.family == SDXL:
            hidden = out.hidden_states[-(self.clip_skip + 1)]
        elif self.clip_skip <= 1:
            hidden = out.last_hidden_state
        else:
            hidden = _final_layer_norm(model)(out.hidden_states[-self.clip_skip])
        pooled = getattr(out, "text_embeds", None)
        if not bool((weights == 1.0).all()):
            weights = weights.to(device=hidden.device, dtype=hidden.dtype)
            original_mean = hidden.mean()
            hidden = hidden * weights.reshape(1, -1, 1)
            hidden = hidden * (original_mean / hidden.mean())
        return hidden, pooled


def _final_layer_norm(model):
    inner = getattr(model, "text_model", model)
    return inner.final_layer_norm
