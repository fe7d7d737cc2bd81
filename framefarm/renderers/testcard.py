"""Procedural test cards for the weight-free preview: an endless card to fly through, and a moving source clip.

The card is a function of card-space coordinates, evaluated wherever the camera looks, so a zoom of 1.04 per frame
over 1 000 frames (×10¹⁷) stays sharp: rings are spaced in log-radius (a new ring every quarter octave of zoom),
spokes in angle, and a grid marks translation. Everything is float64 numpy and OpenCV: bit-identical on re-render.
"""

from __future__ import annotations

import cv2
import numpy as np

RINGS_PER_OCTAVE = 4
SPOKES = 12
GRID_CELLS = 8


def card_coordinates(width: int, height: int, inverse_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel lands on the start card (card pixels), for a 3×3 camera inverse."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    points = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs)])  # pixel centres
    mapped = np.tensordot(inverse_camera, points, axes=1)
    return mapped[0] / mapped[2], mapped[1] / mapped[2]


def endless_card(width: int, height: int, inverse_camera: np.ndarray, *, hue_offset: int = 0) -> np.ndarray:
    """The tunnel card seen through a camera: RGB uint8, ``height``×``width``."""
    px, py = card_coordinates(width, height, inverse_camera)
    unit = min(width, height)
    u = (px - width / 2) / unit
    v = (py - height / 2) / unit
    radius = np.hypot(u, v) + 1e-12
    theta = np.arctan2(v, u)
    octave = np.log2(radius)
    rings = 0.5 + 0.5 * np.cos(2 * np.pi * RINGS_PER_OCTAVE * octave)
    spokes = (np.floor((theta + np.pi) / (2 * np.pi) * SPOKES) % 2).astype(np.float64)
    # Grid lines in card space, at whatever scale the camera shows: cells of 1/GRID_CELLS card units.
    grid_u = np.abs(((u * GRID_CELLS) % 1.0) - 0.5)
    grid_v = np.abs(((v * GRID_CELLS) % 1.0) - 0.5)
    grid = ((grid_u > 0.47) | (grid_v > 0.47)).astype(np.float64)

    hue = (hue_offset + 30 * octave + 90 * spokes) % 180
    saturation = 160 + 80 * rings
    value = 70 + 150 * rings
    value = np.where(grid > 0, 255, value)
    hsv = np.stack([hue, np.minimum(saturation, 255), value], axis=-1).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def source_testcard(index: int, width: int, height: int, fps: float) -> np.ndarray:
    """Frame ``index`` of the built-in source clip: a ball bouncing over colour bars, with a frame counter.

    Used as the source of video-to-video jobs whose ``source.video`` is ``"testcard"``.
    """
    bars = np.array([[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0], [192, 0, 192], [192, 0, 0],
                     [0, 0, 192]], dtype=np.uint8)
    columns = (np.arange(width) * len(bars) // width)
    image = np.ascontiguousarray(np.broadcast_to(bars[columns][None, :, :], (height, width, 3)))
    seconds = index / fps
    # Bounce: a triangle wave in x and y with different periods, so the path covers the frame.
    fx = 1 - abs((seconds / 2.0) % 2 - 1)
    fy = 1 - abs((seconds / 1.3) % 2 - 1)
    r = max(4, min(width, height) // 8)
    cx = int(r + fx * (width - 2 * r))
    cy = int(r + fy * (height - 2 * r))
    cv2.circle(image, (cx, cy), r, (255, 255, 255), thickness=-1, lineType=cv2.LINE_AA)
    cv2.circle(image, (cx, cy), r // 2, (20, 20, 20), thickness=-1, lineType=cv2.LINE_AA)
    cv2.putText(image, f"{index:05d}", (8, height - 10), cv2.FONT_HERSHEY_SIMPLEX, max(0.4, height / 400),
                (255, 255, 255), 1, cv2.LINE_AA)
    return image
