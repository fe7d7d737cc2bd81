"""Loops for VJs: BPM-exact lengths and closing a clip whose end does not quite meet its start.

A loop's last frame leads into its first (frame 0 is not repeated at the end). Closing methods:

* ``crossfade`` — the last ``k`` frames are dissolved into the first ``k``: out = frames[k : n-k] followed by
  ``k`` blends (tail frame ``n-k+i`` fading into head frame ``i``, weight ``(i+1)/(k+1)``). The clip becomes
  ``n - k`` frames long and starts at source frame ``k`` (a loop has no start; this way it streams with only ``k``
  frames held). Its end flows into head frame ``k-1`` and then on into frame ``k``, the new first frame.
* ``match``     — matched-frame closing for Deforum loops that drift back near their start: among the last
  ``search`` frames, the one closest to frame 0 (mean absolute difference on 64-pixel thumbnails) is taken as the
  "next" frame 0 and the clip is cut just before it. Nothing is blended, so no ghosting; the clip shortens by
  ``n - j`` frames, where ``j`` is the matched frame.

BPM: frames = fps × 60 / BPM × beats must be a whole number (Resolume's BPM sync rounds clips to whole beats, and a
fractional frame drifts a loop against the beat). :func:`bpm_frames` computes it exactly (fractions, not floats) and
says which beat counts work when it isn't whole.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import cv2
import numpy as np

from framefarm.errors import InputError

LoopClose = Literal["none", "crossfade", "match"]
DEFAULT_CROSSFADE = 8
DEFAULT_MATCH_SEARCH = 24


@dataclass(frozen=True)
class LoopSpec:
    """How a loop is finished.

    Attributes:
        close: ``"none"`` (the frames already loop), ``"crossfade"`` or ``"match"`` (see the module docstring).
        frames: crossfade length / how many tail frames ``match`` searches (0: the default, 8 / 24).
    """

    close: LoopClose = "none"
    frames: int = 0

    def __post_init__(self) -> None:
        if self.close not in ("none", "crossfade", "match"):
            raise InputError("loop", self.close, "is not a loop closing", "Use wrap, crossfade[:N] or match[:N]")
        if self.frames < 0:
            raise InputError("loop", self.frames, "frame count must be ≥ 0")

    @property
    def length(self) -> int:
        if self.close == "crossfade":
            return self.frames or DEFAULT_CROSSFADE
        if self.close == "match":
            return self.frames or DEFAULT_MATCH_SEARCH
        return 0


def parse_loop(spec: str | None) -> LoopSpec | None:
    """``None``/``"none"`` → not a loop; ``"wrap"`` → already loops; ``"crossfade[:N]"``, ``"match[:N]"``."""
    if spec is None or spec.strip().lower() in ("", "none", "off", "no"):
        return None
    method, _, count = spec.strip().lower().partition(":")
    if method in ("wrap", "loop", "on", "yes"):
        method = "none"
    if method not in ("none", "crossfade", "match") or (count and not count.isdigit()):
        raise InputError("--loop", spec, "is not a loop setting",
                         "Use wrap (the frames already loop), crossfade:8 (dissolve 8 tail frames into the head) "
                         "or match:24 (cut at the tail frame closest to frame 0)")
    return LoopSpec(close=method, frames=int(count) if count else 0)  # type: ignore[arg-type]


def closed_length(frames: int, spec: LoopSpec | None) -> int | None:
    """Frames after closing, when it is known before looking at them (``None`` for ``match``)."""
    if spec is None or spec.close == "none":
        return frames
    if spec.close == "crossfade":
        if spec.length * 2 > frames:
            raise InputError("loop", f"crossfade:{spec.length}",
                             f"needs at least {2 * spec.length} frames, got {frames}",
                             f"Use crossfade:{max(1, frames // 2)} or fewer")
        return frames - spec.length
    return None


# ---------------------------------------------------------------------------------------------------------------
# Closing


def crossfade_loop(frames: Iterable[np.ndarray], overlap: int) -> Iterator[np.ndarray]:
    """Dissolve the last ``overlap`` frames into the first ``overlap`` (see the module docstring); streams."""
    if overlap <= 0:
        yield from frames
        return
    head: list[np.ndarray] = []
    pending: deque[np.ndarray] = deque()
    for frame in frames:
        if len(head) < overlap:
            head.append(frame)
            continue
        pending.append(frame)
        if len(pending) > overlap:
            yield pending.popleft()
    if len(pending) < overlap:
        raise InputError("loop", f"crossfade:{overlap}",
                         f"needs at least {2 * overlap} frames, got {len(head) + len(pending)}",
                         "Use a shorter crossfade")
    for i, (tail, start) in enumerate(zip(pending, head)):
        weight = (i + 1) / (overlap + 1)
        yield cv2.addWeighted(tail, 1.0 - weight, start, weight, 0.0)


def _thumb(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = 64 / max(h, w)
    return cv2.resize(frame[..., :3], (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass
class MatchReport:
    """Filled in by :func:`match_loop` when it has seen every frame: where it cut and how close the match was."""

    cut: int = -1
    difference: float = math.nan
    dropped: int = 0
    candidates: list[float] = field(default_factory=list)


def match_loop(frames: Iterable[np.ndarray], search: int, report: MatchReport | None = None) -> Iterator[np.ndarray]:
    """Cut the clip before the tail frame (among the last ``search``) that looks most like frame 0; streams.

    The first frame is never a candidate, and at least one frame is always kept after it.
    """
    report = report if report is not None else MatchReport()
    first_thumb = None
    tail: deque[tuple[int, np.ndarray, float]] = deque()
    index = -1
    for index, frame in enumerate(frames):
        thumb = _thumb(frame)
        if first_thumb is None:
            first_thumb = thumb
            yield frame
            continue
        tail.append((index, frame, float(np.abs(thumb - first_thumb).mean())))
        if len(tail) > search:
            yield tail.popleft()[1]
    if first_thumb is None:
        return
    candidates = [(diff, i) for i, _, diff in tail if i >= 2]  # keep frames 0 and 1 at least
    if not candidates:
        for _, frame, _ in tail:
            yield frame
        report.cut, report.dropped = index + 1, 0
        return
    difference, cut = min(candidates)
    report.cut, report.difference, report.dropped = cut, difference, index + 1 - cut
    report.candidates = [diff for _, _, diff in tail]
    for i, frame, _ in tail:
        if i < cut:
            yield frame


def close_loop(frames: Iterable[np.ndarray], spec: LoopSpec | None,
               report: MatchReport | None = None) -> Iterable[np.ndarray]:
    """Apply ``spec``'s closing to ``frames`` (lazily)."""
    if spec is None or spec.close == "none":
        return frames
    if spec.close == "crossfade":
        return crossfade_loop(frames, spec.length)
    return match_loop(frames, spec.length, report)


# ---------------------------------------------------------------------------------------------------------------
# BPM


def _fraction(value: float) -> Fraction:
    # 29.97 typed by a user means 2997/100, not the binary float nearest to it.
    return Fraction(str(value)).limit_denominator(1_000_000)


def frames_per_beat(fps: float, bpm: float) -> Fraction:
    """Exact frames in one beat: ``fps × 60 / bpm`` (``Fraction(375, 32)`` at 25 fps, 128 BPM)."""
    if bpm <= 0:
        raise InputError("bpm", bpm, "must be greater than 0", "Example: --bpm 128")
    return _fraction(fps) * 60 / _fraction(bpm)


def working_beats(fps: float, bpm: float, *, count: int = 4) -> list[int]:
    """The smallest beat counts that give a whole number of frames, preferring multiples of 4 (Resolume)."""
    step = frames_per_beat(fps, bpm).denominator
    step4 = step * 4 // math.gcd(step, 4)
    return [step4 * k for k in range(1, count + 1)]


def bpm_frames(fps: float, bpm: float, beats: int) -> int:
    """Frames of a ``beats``-beat loop at ``bpm`` and ``fps``; an :class:`InputError` if that is not whole.

    >>> bpm_frames(25, 128, 32)
    375
    """
    if beats < 1:
        raise InputError("beats", beats, "must be at least 1", "Example: --beats 16")
    exact = frames_per_beat(fps, bpm) * beats
    if exact.denominator != 1:
        good = working_beats(fps, bpm)
        per_beat = frames_per_beat(fps, bpm)
        raise InputError(
            "beats", beats,
            f"give {float(exact):g} frames at {fps:g} fps and {bpm:g} BPM ({float(per_beat):g} frames a beat), "
            "not a whole number",
            f"Use beats = {' or '.join(map(str, good[:3]))} ({', '.join(str(int(per_beat * b)) for b in good[:3])} "
            "frames), or a BPM that divides evenly")
    return int(exact)


def check_bpm(frames: int, fps: float, bpm: float, beats: int | None) -> int:
    """Check that ``frames`` at ``fps`` is a whole number of beats at ``bpm``; return the beat count.

    With ``beats`` given, the frame count must be exactly :func:`bpm_frames`; without, it must be a whole number of
    beats (the count is derived).
    """
    if beats is not None:
        expected = bpm_frames(fps, bpm, beats)
        if frames != expected:
            raise InputError("frames", frames,
                             f"a {beats}-beat loop at {bpm:g} BPM and {fps:g} fps is {expected} frames",
                             f"Render {expected} frames (before loop closing and interpolation, adjust for them)")
        return beats
    exact = Fraction(frames) / frames_per_beat(fps, bpm)
    if exact.denominator != 1:
        good = working_beats(fps, bpm)
        raise InputError("frames", frames,
                         f"is {float(exact):.3g} beats at {bpm:g} BPM and {fps:g} fps, not a whole number",
                         f"Use {', '.join(str(bpm_frames(fps, bpm, b)) for b in good[:3])} frames "
                         f"({', '.join(map(str, good[:3]))} beats)")
    return int(exact)
