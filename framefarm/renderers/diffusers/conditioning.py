"""Prompts → conditioning for every kind: extra-network tags split off, embeddings found, A1111 weights, chunks and
clip skip (:class:`framefarm.renderers.prompt_encode.PromptEncoder`)."""

from __future__ import annotations

import re
from typing import Any

from framefarm.errors import InputError
from framefarm.renderers.diffusers.patches import Networks


def split_networks(positive: str, negative: str) -> tuple[str, str, Networks]:
    """A frame's prompts without their ``<lora:…>`` / ``<hypernet:…>`` tags, and the networks the tags name (A1111
    reads tags in either prompt)."""
    from framefarm.renderers.prompt_weights import extract_extra_networks

    positive, tags = extract_extra_networks(positive, field="prompts")
    negative, negative_tags = extract_extra_networks(negative, field="negative_prompt")
    loras: list[tuple[str, float, float]] = []
    hypernets: list[tuple[str, float]] = []
    for tag in tags + negative_tags:
        if tag.kind == "hypernet":
            hypernets.append((tag.name, tag.unet_weight))
        else:
            loras.append((tag.name, tag.te_weight, tag.unet_weight))
    return positive, negative, Networks(tuple(loras), tuple(hypernets))


def find_embeddings(library, texts: list[str], *, allow_pickle: bool) -> dict[str, Any]:
    """The embeddings whose names appear in these prompts, loaded (a refused one used in a prompt is an error)."""
    from framefarm.renderers.models.embeddings import load_embedding

    if library is None:
        return {}
    joined = "\n".join(texts)
    found = {}
    for entry in library.of_kind("embedding"):
        if not re.search(r"(?<![\w])" + re.escape(entry.stem) + r"(?![\w])", joined, re.IGNORECASE):
            continue
        if not entry.usable:
            raise InputError("prompts", entry.stem, f"names the embedding {entry.name}, which is {entry.status}: "
                                                    f"{entry.reason}")
        found[entry.stem] = load_embedding(entry, allow_pickle=allow_pickle)
    return found


def prompt_encoder(components, texts: list[str], *, clip_skip: int, allow_pickle: bool):
    """An encoder for ``texts`` with the embeddings they name. Call with the base's lock held and the group's
    networks applied (a LoRA changes the text encoder)."""
    from framefarm.renderers.prompt_encode import PromptEncoder

    embeddings = find_embeddings(components.library, texts, allow_pickle=allow_pickle)
    return PromptEncoder(components.base, embeddings, clip_skip=clip_skip)


def encode_pairs(components, positives: list[str], negatives: list[str], *, clip_skip: int, allow_pickle: bool):
    """Positive and negative conditioning of a group (each padded to the group's longest prompt)."""
    texts = list(positives) + list(negatives)
    encoded = prompt_encoder(components, texts, clip_skip=clip_skip, allow_pickle=allow_pickle).encode_many(texts)
    return encoded[: len(positives)], encoded[len(positives):]
