"""A1111 prompt syntax: attention weights, ``BREAK``, and the ``<lora:…>`` / ``<hypernet:…>`` extra-network tags.

Semantics follow A1111's documented prompt grammar (reimplemented here from that description):

* ``(words)`` multiplies the weight of ``words`` by 1.1, ``[words]`` divides it by 1.1; brackets nest;
  ``(words:1.3)`` sets the factor explicitly; an unclosed bracket applies to the end of the prompt;
  ``\\(`` ``\\)`` ``\\[`` ``\\]`` are literal brackets; a ``:`` outside a weight is plain text.
* ``BREAK`` (upper case, its own word) ends the current 75-token chunk.
* ``<lora:name>``, ``<lora:name:0.8>`` and ``<hypernet:name:0.5>`` are removed from the text and returned as
  :class:`ExtraNetwork` entries (default weight 1.0). A1111's two-weight form ``<lora:name:te:unet>`` is accepted:
  the first weight applies to the text encoder(s), the second to the UNet.

Pure Python: no torch, so the planner and tests can call it freely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from framefarm.errors import InputError

ROUND_FACTOR = 1.1
SQUARE_FACTOR = 1 / 1.1
BREAK = "BREAK"

_EXTRA_NETWORK = re.compile(r"<(lora|lyco|hypernet):([^:>]+)((?::[^:>]*){0,2})>", re.IGNORECASE)
_TOKENS = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*")


@dataclass(frozen=True)
class ExtraNetwork:
    """A ``<lora:…>`` or ``<hypernet:…>`` tag: which network, and how strongly (text encoder / UNet)."""

    kind: str  # "lora" or "hypernet"
    name: str
    te_weight: float
    unet_weight: float


@dataclass(frozen=True)
class WeightedText:
    """A run of prompt text with one attention weight; ``text == BREAK`` with weight -1 marks a chunk break."""

    text: str
    weight: float

    @property
    def is_break(self) -> bool:
        return self.weight == -1 and self.text == BREAK


def extract_extra_networks(prompt: str, *, field: str = "prompt") -> tuple[str, tuple[ExtraNetwork, ...]]:
    """Remove ``<lora:…>``/``<hypernet:…>`` tags from a prompt; return the clean text and the tags, in order."""
    found: list[ExtraNetwork] = []

    def take(match: re.Match[str]) -> str:
        kind = "hypernet" if match.group(1).lower() == "hypernet" else "lora"
        name = match.group(2).strip()
        numbers = [p.strip() for p in match.group(3).split(":")[1:] if p.strip()]
        try:
            weights = [float(p) for p in numbers]
        except ValueError:
            raise InputError(field, match.group(0), "has a weight that is not a number",
                             f"Write <{kind}:{name}:0.8>") from None
        te = weights[0] if weights else 1.0
        unet = weights[1] if len(weights) > 1 else te
        found.append(ExtraNetwork(kind, name, te, unet))
        return ""

    text = _EXTRA_NETWORK.sub(take, prompt)
    return text, tuple(found)


def parse_attention(text: str) -> list[WeightedText]:
    """Split a prompt into runs of equal attention weight (A1111 ``parse_prompt_attention`` semantics).

    >>> parse_attention("a (red:1.5) [cat]")
    [WeightedText(text='a ', weight=1.0), WeightedText(text='red', weight=1.5), WeightedText(text=' ', weight=1.0), \
WeightedText(text='cat', weight=0.9090909090909091)]
    """
    pieces: list[list] = []  # [text, weight] pairs, mutated as brackets close
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _TOKENS.finditer(text):
        token, explicit = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) > 1:
            pieces.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif explicit is not None and round_open:
            scale(round_open.pop(), float(explicit))
        elif token == ")" and round_open:
            scale(round_open.pop(), ROUND_FACTOR)
        elif token == "]" and square_open:
            scale(square_open.pop(), SQUARE_FACTOR)
        else:
            for index, part in enumerate(_BREAK_WORD.split(token)):
                if index > 0:
                    pieces.append([BREAK, -1.0])
                pieces.append([part, 1.0])
    for start in round_open:
        scale(start, ROUND_FACTOR)
    for start in square_open:
        scale(start, SQUARE_FACTOR)
    # Merge neighbours of equal weight (a break never merges: its weight is -1 and stays so).
    merged: list[list] = []
    for piece in pieces:
        if piece[0] == "" and piece[1] != -1.0:
            continue
        if merged and merged[-1][1] == piece[1] and piece[1] != -1.0:
            merged[-1][0] += piece[0]
        else:
            merged.append(list(piece))
    if not merged:
        merged = [["", 1.0]]
    return [WeightedText(t, w) for t, w in merged]
