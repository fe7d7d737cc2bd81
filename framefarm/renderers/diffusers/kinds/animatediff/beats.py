"""VJ helper: how many frames a clip of ``beats`` beats is at ``bpm`` and ``fps``.

``frames = fps × 60 / bpm × beats`` must be whole; when it is not, the error names the *nearest* beat counts that
work (below and above the request), where ``framefarm.video.loops.bpm_frames`` names the smallest ones. Kept here,
in plain fractions, because renderers do not import the finishing room (ARCHITECTURE.md).
"""

from __future__ import annotations

from fractions import Fraction

from framefarm.errors import InputError


def _exact(value: float) -> Fraction:
    # 29.97 typed by a user means 2997/100, not the binary float nearest to it.
    return Fraction(str(value)).limit_denominator(1_000_000)


def nearest_beats(bpm: float, fps: float, beats: int, *, count: int = 2) -> list[int]:
    """Beat counts nearest to ``beats`` (``count`` below or equal and above) that give a whole number of frames."""
    step = (_exact(fps) * 60 / _exact(bpm)).denominator  # beats must be a multiple of this
    below = [b for b in range((beats // step) * step, 0, -step)][:count]
    above = [b for b in range((beats // step + 1) * step, beats + step * (count + 1), step)][:count]
    return sorted(set(below + above), key=lambda b: (abs(b - beats), b))


def clip_frames(bpm: float, beats: int, fps: float) -> int:
    """Frames of a ``beats``-beat clip; an :class:`InputError` suggesting the nearest valid beat counts otherwise.

    >>> clip_frames(120, 8, 16)
    64
    """
    if bpm <= 0 or fps <= 0:
        raise InputError("bpm" if bpm <= 0 else "fps", bpm if bpm <= 0 else fps, "must be greater than 0")
    if beats < 1:
        raise InputError("beats", beats, "must be at least 1", "Example: beats = 16")
    per_beat = _exact(fps) * 60 / _exact(bpm)
    exact = per_beat * beats
    if exact.denominator == 1:
        return int(exact)
    options = nearest_beats(bpm, fps, beats)[:3]
    raise InputError("beats", beats, f"is {float(exact):g} frames at {bpm:g} BPM and {fps:g} fps "
                                     f"({float(per_beat):g} frames a beat), not a whole number",
                     "Use beats = " + " or ".join(f"{b} ({int(per_beat * b)} frames)" for b in options))
