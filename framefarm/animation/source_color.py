"""Colour matching of a rendered video-to-video frame to its source frame, against colour flicker.

Implements the colour transfer of Reinhard et al. (2001), "Color Transfer between Images": in LAB, each channel of
the frame is shifted and scaled so its mean and standard deviation become the reference's. ``strength`` moves the
statistics only part of the way (0: the frame unchanged, 1: the reference's mean and spread).

Why mean/std and not histogram matching (what Deforum's colour coherence does, :func:`coherence.match_colors`):

* the target is the *source* frame, whose content the restyle deliberately changes; histogram matching forces the
  source's whole distribution onto the new picture (its style comes back, and flat restyled areas band), while a
  per-channel affine map only removes the global colour cast and contrast drift that flickers from frame to frame;
* an affine map is smooth in its inputs: the source's statistics move slowly along a shot, so the correction does
  too, and it never reorders values (no new edges, no posterising).

Determinism: LAB comes from OpenCV's 8-bit conversion (fixed-point tables, no float summation); means and variances
are computed from exact integer sums, so they do not depend on SIMD width or summation order; the map itself is
element-wise float64. Equal inputs give equal bytes. Only numpy and OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np

from framefarm.errors import InputError


def _moments(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of an 8-bit LAB image, from exact integer sums."""
    values = lab.reshape(-1, 3).astype(np.int64)
    count = values.shape[0]
    total = values.sum(axis=0)  # int64: exact (255² · 2³¹ pixels would still fit)
    squares = (values * values).sum(axis=0)
    mean = total / count
    variance = np.maximum(squares / count - mean * mean, 0.0)
    return mean, np.sqrt(variance)


def match_source_colors(image: np.ndarray, source: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """``image`` with its LAB mean and standard deviation moved toward ``source``'s by ``strength`` (0…1).

    Both are RGB uint8 (H, W, 3) of the same size. A flat channel (standard deviation 0) is only shifted.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.shape != source.shape \
            or source.dtype != np.uint8:
        raise InputError("color_match", f"{image.dtype} {image.shape} vs {source.dtype} {source.shape}",
                         "needs two RGB uint8 images of the same size")
    if not 0.0 <= strength <= 1.0:
        raise InputError("color_match_strength", strength, "must be between 0 and 1")
    if strength == 0.0:
        return image
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    mean, std = _moments(lab)
    ref_mean, ref_std = _moments(cv2.cvtColor(source, cv2.COLOR_RGB2LAB))
    target_mean = mean + strength * (ref_mean - mean)
    target_std = std + strength * (ref_std - std)
    scale = np.where(std > 0, target_std / np.where(std > 0, std, 1.0), 1.0)
    matched = (lab.astype(np.float64) - mean) * scale + target_mean
    lab_out = np.clip(np.rint(matched), 0, 255).astype(np.uint8)
    return cv2.cvtColor(lab_out, cv2.COLOR_LAB2RGB)


def color_match_frame(job, image: np.ndarray, frame: int, source_frame) -> np.ndarray:
    """Apply the job's ``color_match`` setting to rendered ``frame`` (``source_frame(frame)`` reads its source).

    Unchanged when it is ``"none"`` (the source is not even read), and when the frame *is* its source (a strength
    too low for one denoising step): the 8-bit LAB round trip would otherwise nudge it.
    """
    mode = getattr(job, "color_match", "none")
    if mode == "none":
        return image
    if mode != "source":
        raise InputError("color_match", mode, "is not a colour-match mode", 'Use "none" or "source"')
    source = source_frame(frame)
    if np.array_equal(image, source):
        return image
    return match_source_colors(image, source, job.color_match_strength)
