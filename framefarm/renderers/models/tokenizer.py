"""The CLIP tokenizer of SD1.5 and SDXL, built from the BPE file shipped in the package (no hub).

From OpenAI CLIP's ``bpe_simple_vocab_16e6.txt.gz`` (open_clip ships it, MIT): merges are lines 1 … 48 894 of the
file; the vocabulary is the 256 byte-unicode symbols, the same with ``</w>``, each merge joined, then
``<|startoftext|>`` and ``<|endoftext|>`` — 49 408 ids (``"a photo of a cat"`` →
``[49406, 320, 1125, 539, 320, 2368, 49407]``). ``model_max_length`` is 77, as every SD pipeline expects;
SDXL's second tokenizer pads with ``"!"`` (id 0), as OpenCLIP did in training.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources

MERGE_LINES = 49152 - 256 - 2  # CLIP's merge count: the vocabulary holds 49 408 entries
MAX_LENGTH = 77


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's byte → printable-character table (every byte gets a visible stand-in)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


@lru_cache(maxsize=1)
def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    data = resources.files("framefarm.renderers.models").joinpath("configs", "clip", "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.decompress(data.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:MERGE_LINES + 1]]
    symbols = _bytes_to_unicode()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(vocab)}, merges  # type: ignore[return-value]


def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """A fresh CLIP tokenizer (``pad_token="!"`` for SDXL's second encoder)."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=MAX_LENGTH, pad_token=pad_token)
