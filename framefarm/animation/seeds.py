"""Per-frame seeds for Deforum's ``seed_behavior`` options, decided at plan time so a job is reproducible.

Deforum steps its seed after each *diffused* frame (``next_seed``); cadence frames in between are not diffused and
do not step it. Here the seed of diffused frame number ``k`` (counting diffused frames only, from 0) is:

* ``iter``: ``s + ceil(k / iter_n)``. That is Deforum's exact sequence: it adds 1 whenever its step counter is a
  multiple of ``seed_iter_N``, *before* counting, so ``iter_n=2`` gives s, s+1, s+1, s+2, s+2, …
* ``fixed``: ``s``.
* ``ladder``: s, s+2, s+1, s+3, s+2, … (+2, -1, +2, -1 …).
* ``alternate``: s, s+1, s, s+1, …
* ``random``: ``s`` for the first diffused frame, then a fresh random seed each diffused frame.
* ``schedule``: ``int(seed_schedule[frame])`` (truncated toward zero), where ``-1`` means random.

A non-diffused frame carries the seed of the last diffused frame before it (the base seed before any).

Random seeds come from ``numpy.random.default_rng(s)``: one draw per frame *index*, so a frame's random seed depends
only on the job seed and its index, not on the cadence or on how many frames the job has. Every seed is wrapped into
``0 … 2**32 - 1`` (the range A1111 and numpy generators accept): ``iter`` past ``2**32 - 1`` continues at 0, and a
schedule value of ``-5`` becomes ``2**32 - 5``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from framefarm.animation.keyframes import parse_schedule
from framefarm.errors import InputError

__all__ = ["DEFAULT_SEED_SCHEDULE", "SEED_BEHAVIORS", "SEED_MODULUS", "SeedBehavior", "frame_seeds"]

SeedBehavior = Literal["iter", "fixed", "random", "ladder", "alternate", "schedule"]
SEED_BEHAVIORS: tuple[str, ...] = ("iter", "fixed", "random", "ladder", "alternate", "schedule")
SEED_MODULUS = 2**32
# Deforum's default: the seed at the first and last frame, random in between.
DEFAULT_SEED_SCHEDULE = '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)'


def _random_seeds(seed: int, frames: int) -> np.ndarray:
    """One random seed per frame index, drawn from a generator seeded by the job seed (prefix-stable in frames)."""
    return np.random.default_rng(seed).integers(0, SEED_MODULUS, size=frames, dtype=np.int64)


def _check_inputs(seed: int, frames: int, behavior: str, iter_n: int, diffused: Sequence[bool] | None) -> np.ndarray:
    """Validate and return the diffused mask."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError("seed", seed, "must be a whole number", "Example: seed = 1234")
    if seed == -1:
        raise InputError("seed", seed, "is -1 (random), which must be resolved before planning",
                         "Pick the random seed once when the job is created, then plan with it")
    if not 0 <= seed < SEED_MODULUS:
        raise InputError("seed", seed, f"is outside 0 … {SEED_MODULUS - 1}", "Use a seed in that range, e.g. 1234")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise InputError("frames", frames, "must be a whole number of frames ≥ 1", "Example: frames = 120")
    if behavior not in SEED_BEHAVIORS:
        raise InputError("seeds.behavior", behavior, "is not a known seed behaviour",
                         f"Use one of: {', '.join(SEED_BEHAVIORS)}")
    if isinstance(iter_n, bool) or not isinstance(iter_n, (int, np.integer)) or iter_n < 1:
        raise InputError(
            "seeds.iter_n", iter_n, "must be a whole number ≥ 1", "Example: iter_n = 1 (a new seed every frame)"
        )
    if diffused is None:
        return np.ones(frames, dtype=bool)
    mask = np.asarray(diffused)
    if mask.shape != (frames,) or not (mask.dtype == bool or np.isin(mask, (0, 1)).all()):
        raise InputError("diffused", f"{mask.dtype} array of shape {mask.shape}",
                         f"must be {frames} booleans, one per frame", "Pass [i % cadence == 0 for i in range(frames)]")
    return mask.astype(bool)


def frame_seeds(
    seed: int,
    *,
    frames: int,
    behavior: SeedBehavior = "iter",
    iter_n: int = 1,
    seed_schedule: str | None = None,
    diffused: Sequence[bool] | None = None,
    scheduled: Sequence[float] | None = None,
) -> np.ndarray:
    """The seed of every frame.

    Args:
        seed (`int`): the job's resolved seed, ``0 … 2**32 - 1`` (``-1`` must be resolved by the caller).
        frames (`int`): frames in the job.
        behavior (`str`, *optional*, defaults to ``"iter"``): one of :data:`SEED_BEHAVIORS`.
        iter_n (`int`, *optional*, defaults to 1): for ``iter``, diffused frames per seed step (``seed_iter_N``).
        seed_schedule (`str`, *optional*): for ``schedule``, a numeric schedule (``s`` is the seed, ``-1`` random);
            defaults to :data:`DEFAULT_SEED_SCHEDULE`. Ignored by the other behaviours.
        diffused (`Sequence[bool]`, *optional*): which frames are diffused (cadence); all of them by default.
        scheduled (`Sequence[float]`, *optional*): for ``schedule``, the values per frame (a Parseq seed series)
            instead of ``seed_schedule``; truncated and ``-1`` random, as schedule values are.

    Returns:
        An int64 array of length ``frames``, every value in ``0 … 2**32 - 1``.

    Raises:
        InputError: a seed of -1 or out of range, an unknown behaviour, ``iter_n < 1``, a ``diffused`` of the wrong
            length, or a bad seed schedule.
    """
    mask = _check_inputs(seed, frames, behavior, iter_n, diffused)
    seed = int(seed)

    # 1. The seed each frame would get if it were diffused.
    if behavior == "schedule":
        text = DEFAULT_SEED_SCHEDULE if seed_schedule is None else seed_schedule
        if scheduled is not None:
            text = "the per-frame seed series"
            raw = np.asarray(scheduled, dtype=np.float64)
            if raw.shape != (frames,):
                raise InputError("seeds", f"{raw.size} seeds", f"must give one seed per frame ({frames})",
                                 "Pass as many scheduled seeds as the job has frames")
        else:
            raw = parse_schedule(text, frames=frames, field="seeds.schedule", seed=seed)
        scheduled = np.trunc(raw)
        if np.abs(scheduled).max() >= 2**62:  # keeps the int64 cast exact; no real seed is near this
            raise InputError(
                "seeds.schedule", text, "has a seed beyond ±2**62", f"Use seeds in 0 … {SEED_MODULUS - 1}"
            )
        candidates = scheduled.astype(np.int64)
        random_at = candidates == -1
        if random_at.any():
            candidates[random_at] = _random_seeds(seed, frames)[random_at]
    else:
        k = np.cumsum(mask) - 1  # index of each diffused frame among the diffused frames
        if behavior == "iter":
            step = -(-k // iter_n)  # ceil(k / iter_n) in integers
        elif behavior == "ladder":
            step = np.where(k % 2 == 0, k // 2, (k + 3) // 2)
        elif behavior == "alternate":
            step = k % 2
        else:  # fixed, random
            step = np.zeros_like(k)
        candidates = seed + step
        if behavior == "random":
            candidates = np.where(k == 0, seed, _random_seeds(seed, frames))

    # 2. Non-diffused frames keep the seed of the last diffused frame before them (the base seed before any).
    last_diffused = np.maximum.accumulate(np.where(mask, np.arange(frames), -1))
    seeds = np.where(last_diffused >= 0, candidates[np.maximum(last_diffused, 0)], seed)
    return np.mod(seeds, SEED_MODULUS).astype(np.int64)
