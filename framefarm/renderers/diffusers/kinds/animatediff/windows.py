"""Context windows, segments and seams for AnimateDiff clips: pure index arithmetic, no torch.

A motion module sees ``context_length`` frames at once (16 for the SD1.5 modules). Longer clips are denoised in
overlapping **context windows**: every step, each window predicts the noise of its frames and a frame's prediction
is the weighted mean over the windows that hold it (AnimateDiff-Evolved's "uniform" context scheduling, and
diffusers' FreeNoise, work the same way). A **looping** clip's windows wrap around the end (frame ``N-1`` sits next
to frame ``0`` inside a window), so the motion module makes the last frame lead into the first — diffusers has no
such option. Loop windows also shift by half a stride on odd steps, so no frame pair is always at a window edge.

Across GPUs a clip is cut into **segments** of ``segment_frames`` frames (a job setting, never the worker count):
each segment is denoised on its own, extended by ``segment_overlap`` frames into the next segment (wrapping for a
loop), and the two renders of those shared frames are cross-faded. A frame's initial noise depends only on the job
seed and the frame index, so the two renders of a shared frame start from the same noise and agree closely, and the
output is identical whichever worker renders which segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Weighting = Literal["flat", "pyramid"]


def context_windows(frames: int, length: int, overlap: int, *, loop: bool, shift: int = 0) -> list[list[int]]:
    """Frame indices of each context window over ``frames`` frames.

    Open clips: windows start every ``length - overlap`` frames and the last one is pulled back to end on the last
    frame (no window runs past the clip). Loops: windows start every stride from ``shift`` and wrap (indices mod
    ``frames``), so the windows around the wrap hold both ends of the clip. A clip no longer than ``length`` is one
    window (a loop of that size also gets a second window rotated by half the clip, so its wrap pair is seen in the
    middle of a window too).
    """
    if frames < 1 or length < 1 or not 0 <= overlap < length:
        raise ValueError(f"bad window settings: frames={frames}, length={length}, overlap={overlap}")
    if frames <= length:
        whole = list(range(frames))
        if loop and frames > 1:
            half = frames // 2
            return [whole, whole[half:] + whole[:half]]
        return [whole]
    stride = length - overlap
    if loop:
        starts = range(shift % stride, frames + shift % stride, stride)
        return [[(start + j) % frames for j in range(length)] for start in starts]
    starts = list(range(0, frames - length + 1, stride))
    if starts[-1] + length < frames:
        starts.append(frames - length)
    return [list(range(start, start + length)) for start in starts]


def window_weights(length: int, weighting: Weighting) -> np.ndarray:
    """Weight of each window position: ``flat`` (all 1) or ``pyramid`` (1 at the edges rising to the middle), which
    lets the frames in a window's middle — where the motion module sees context on both sides — dominate."""
    if weighting == "flat":
        return np.ones(length, dtype=np.float32)
    if weighting == "pyramid":
        position = np.arange(length)
        return np.minimum(position + 1, length - position).astype(np.float32)
    raise ValueError(f"unknown window weighting {weighting!r}: use 'flat' or 'pyramid'")


@dataclass(frozen=True)
class Segment:
    """One independently denoised part of a clip.

    Attributes:
        index: segment number.
        start: first frame it owns.
        stop: one past its last owned frame.
        frames: every frame it renders, in order: the owned ones then the overlap into the next segment (indices
            mod the clip length for a loop).
    """

    index: int
    start: int
    stop: int
    frames: tuple[int, ...]


def segments(frames: int, segment_frames: int, overlap: int, *, loop: bool) -> list[Segment]:
    """Cut a clip into segments of ``segment_frames`` (0: the whole clip is one segment), each extended by
    ``overlap`` frames into the next (into segment 0 for a loop's last segment; not at all for an open clip's)."""
    if segment_frames <= 0 or segment_frames >= frames:
        return [Segment(0, 0, frames, tuple(range(frames)))]
    out = []
    starts = list(range(0, frames, segment_frames))
    for index, start in enumerate(starts):
        stop = min(start + segment_frames, frames)
        last = index == len(starts) - 1
        tail = 0 if (last and not loop) else overlap
        out.append(Segment(index, start, stop, tuple((f % frames) for f in range(start, stop + tail))))
    return out


def seam_weight(position: int, overlap: int) -> float:
    """Share of the *later* segment at ``position`` (0 … overlap−1) of a seam; the earlier one gets the rest.

    A linear cross-fade that never reaches 0 or 1 inside the seam, so both renders contribute to every shared frame.
    """
    return (position + 1) / (overlap + 1)


def owners(frame: int, segs: list[Segment]) -> list[tuple[Segment, float]]:
    """The segments that render ``frame`` and each one's blend weight (weights sum to 1)."""
    holding = [s for s in segs if frame in s.frames]
    if len(holding) == 1:
        return [(holding[0], 1.0)]
    if len(holding) != 2:
        raise ValueError(f"frame {frame} is held by {len(holding)} segments; segment_overlap must be smaller than "
                         "segment_frames")
    # The earlier segment holds the frame in its tail; the later one owns it.
    later = next(s for s in holding if s.start <= frame < s.stop)
    earlier = next(s for s in holding if s is not later)
    position = frame - later.start
    weight = seam_weight(position, len(earlier.frames) - (earlier.stop - earlier.start))
    return [(earlier, 1.0 - weight), (later, weight)]
