"""Deforum prompt schedules: ``{"0": "a cat --neg blurry", "max_f/2": "a dog"}`` → one prompt pair per frame.

Semantics (``shared/design/DEFORUM_SCHEDULES.md``, reimplemented from that description):

* Keys are frame numbers or expressions over ``max_f`` (``frames - 1``), truncated toward zero like Deforum's
  ``int()``; keys outside ``0 … frames-1`` are dropped; for keys that land on the same frame the later one wins.
  Each frame uses the prompt of the last key at or before it; frames before the first key use the first prompt.
  With no key inside the job, every frame takes the prompt of the first key past it (Deforum's back-fill).
* ``--neg`` splits a prompt: the text after it is the negative prompt; the text after a second ``--neg`` joins the
  negative too (Deforum crashes there). The job-wide ``positive`` goes before each prompt and the job-wide
  ``negative`` after its negative part; a stray ``--neg`` in the job-wide negative is removed. Parts are joined with
  one space and stripped at the seams only (the CLIP tokenizer ignores that whitespace, so the text the encoder sees
  is Deforum's); everything else, A1111 attention and composable syntax included, passes through untouched.
* Backtick math: each ``` `expr` ``` is evaluated per frame with ``t`` (frame index) and ``max_f`` through
  :mod:`framefarm.animation.safe_math` (Deforum replaces the letter ``t`` textually, which breaks ``sqrt(t+1)``), and
  written the way Deforum writes numexpr's result (:mod:`framefarm.animation.prompt_math`): integer arithmetic stays
  integer (`` `t*2` `` → ``0``, `` `max_f` `` → ``119``), floats as Python writes them (``0.5``, ``1.0``,
  ``0.30000000000000004``, ``1e-05``), a bare comparison as ``True``/``False``.
  An unclosed or empty backtick is an error (Deforum leaves the first as text and writes ``1`` for the second).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from framefarm.animation.prompt_math import format_value, result_kinds
from framefarm.animation.safe_math import Expression, compile_expression
from framefarm.errors import InputError

__all__ = ["FramePrompt", "prompts_for_frames"]

NEG_MARKER = "--neg"
_KEY_NAMES = frozenset({"max_f"})
_MATH_NAMES = frozenset({"t", "max_f"})


@dataclasses.dataclass(frozen=True)
class FramePrompt:
    """The prompt pair one frame is rendered with.

    Attributes:
        positive (`str`): the job-wide positive prompt, then the frame's prompt (before ``--neg``).
        negative (`str`): the frame's negative part (after ``--neg``), then the job-wide negative prompt.
    """

    positive: str
    negative: str


@dataclasses.dataclass(frozen=True)
class _Template:
    """A prompt text cut at its backticks: literal pieces alternate with expressions (``pieces[0]`` is literal)."""

    pieces: tuple[str | Expression, ...]

    @property
    def is_static(self) -> bool:
        return len(self.pieces) == 1

    def render(self, values: list[list[float]], kinds: list[np.ndarray], frame: int) -> str:
        """The text at one frame, given each expression's values and kinds over the frames being rendered."""
        out, k = [], 0
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
            else:
                out.append(format_value(values[k][frame], int(kinds[k][frame])))
                k += 1
        return "".join(out)


def _template(text: str, field: str, names: frozenset[str] = _MATH_NAMES) -> _Template:
    parts = text.split("`")
    if len(parts) % 2 == 0:
        raise InputError(field, text, "has an unclosed backtick (`)", "Write math as `0.5+0.5*sin(t/3)`, in pairs")
    pieces: list[str | Expression] = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            pieces.append(part)
        elif not part.strip():
            raise InputError(field, text, "has an empty `` math block", "Write math as `0.5+0.5*sin(t/3)`")
        else:
            pieces.append(compile_expression(part, field=field, names=names))
    return _Template(tuple(pieces))


def _joined(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


def _frame_of(key: str | int, frames: int, field: str) -> int:
    """The frame a prompt key names; keys beyond the job come out of range and are dropped by the caller."""
    if isinstance(key, bool) or not isinstance(key, (str, int, float, np.integer, np.floating)):
        raise InputError(field, key, "is not a frame number", 'Keys are frame numbers or expressions: "0", "max_f/2"')
    if isinstance(key, str):
        if key.strip().isascii() and key.strip().isdigit():
            return int(key)
        value = compile_expression(key, field=field, names=_KEY_NAMES).evaluate(max_f=frames - 1)
    else:
        value = float(key)
        if not math.isfinite(value):
            raise InputError(field, key, "is not a finite frame number", "Use a whole frame number such as 30")
    return math.trunc(value)  # Deforum: int(numexpr.evaluate(key)); a fractional key truncates toward zero


def prompts_for_frames(
    prompts: Mapping[str | int, str],
    *,
    frames: int,
    positive: str = "",
    negative: str = "",
    field: str = "prompts",
    seed: int | None = None,
) -> list[FramePrompt]:
    """The positive and negative prompt of every frame.

    Args:
        prompts (`Mapping[str | int, str]`): key (frame number or expression over ``max_f``) → prompt text, which
            may hold ``--neg`` and backtick math.
        frames (`int`): frames in the job.
        positive (`str`, *optional*): job-wide positive prompt, put before each frame's prompt.
        negative (`str`, *optional*): job-wide negative prompt, put after each frame's negative part.
        field (`str`, *optional*, defaults to ``"prompts"``): the field name for errors.
        seed (`int`, *optional*): when given, backtick math may also use ``s`` (the seed), as schedules do (a
            framefarm extension; Deforum's prompt math knows only ``t`` and ``max_f``).

    Returns:
        One :class:`FramePrompt` per frame (frames without backtick math share one instance per key).

    Raises:
        InputError: no prompt, a key that is not a frame number or valid expression, a
            prompt that is not text, ``--neg`` in the job-wide positive prompt, or bad backtick math.
    """
    # 1. Check inputs.
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise InputError("frames", frames, "must be a whole number of frames ≥ 1", "Example: frames = 120")
    if not isinstance(prompts, Mapping) or not prompts:
        raise InputError(field, prompts, "must map frame numbers to prompts", 'Example: {"0": "a cat", "60": "a dog"}')
    for name, text in (("positive_prompt", positive), ("negative_prompt", negative)):
        if not isinstance(text, str):
            raise InputError(name, text, "must be text", 'Use "" for none')
    if NEG_MARKER in positive:
        raise InputError(
            "positive_prompt", positive, f"contains {NEG_MARKER}", "Put negative text in negative_prompt instead"
        )
    global_negative = negative.replace(NEG_MARKER, "")  # a stray --neg there is removed, as Deforum does

    # 2. Resolve keys: frame → prompt key (later keys win on the same frame).
    table: dict[int, str | int] = {}
    outside: dict[int, str | int] = {}  # keys past the job, in the order their frames first appear
    for key, text in prompts.items():
        key_field = f"{field}[{key!r}]"
        if not isinstance(text, str):
            raise InputError(key_field, text, "must be the prompt text", 'Example: "a cat --neg blurry"')
        frame = _frame_of(key, frames, key_field)
        if 0 <= frame < frames:
            table[frame] = key
        else:
            outside[frame] = key
    if not table:
        # Deforum writes keys past the job after its frames and back-fills: with no key inside the job, every
        # frame takes the first such key's prompt (a one-frame job keyed at 10 renders the prompt at 10).
        table[0] = outside[next(iter(outside))]

    # 3. Per key: merge the job-wide prompts, split at --neg, render backtick math over the frames the key covers.
    starts = sorted(table)
    names, extra = (_MATH_NAMES, {}) if seed is None else (_MATH_NAMES | {"s"}, {"s": seed})
    out: list[FramePrompt] = []
    for index, start in enumerate(starts):
        first = 0 if index == 0 else start  # frames before the first key use the first prompt
        end = starts[index + 1] if index + 1 < len(starts) else frames
        key = table[start]
        key_field = f"{field}[{key!r}]"
        own_positive, *own_negatives = prompts[key].split(NEG_MARKER)
        pos = _template(_joined(positive, own_positive), key_field, names)
        neg = _template(_joined(*own_negatives, global_negative), key_field, names)
        if pos.is_static and neg.is_static:
            shared = FramePrompt(pos.pieces[0], neg.pieces[0])  # type: ignore[arg-type]
            out.extend([shared] * (end - first))
            continue
        env = {"t": np.arange(first, end, dtype=np.float64), "max_f": frames - 1, **extra}
        pos_values, neg_values = (
            [p.evaluate(**env).tolist() for p in tpl.pieces if isinstance(p, Expression)] for tpl in (pos, neg)
        )
        pos_kinds, neg_kinds = (
            [result_kinds(p.text, **env) for p in tpl.pieces if isinstance(p, Expression)] for tpl in (pos, neg)
        )
        out.extend(
            FramePrompt(pos.render(pos_values, pos_kinds, i), neg.render(neg_values, neg_kinds, i))
            for i in range(end - first)
        )
    return out
