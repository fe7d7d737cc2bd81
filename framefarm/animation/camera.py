"""2D camera motion with Deforum's semantics, as 3×3 homogeneous matrices (OpenCV's pixel convention).

Deforum warps frame n−1 into frame n with ``M_n = R_n · T_n``: translate by (tx, ty) first, then rotate by ``angle``
degrees and scale by ``zoom`` about the transform centre (``cv2.getRotationMatrix2D``'s matrix). The camera after n
frames is the product ``C_n = M_n · … · M_1`` (frame 0 is the start image, unmoved). Keeping the product lets the
preview renderer draw any frame directly from the start image: no blur builds up, and frames are independent, so
chunks render in any order.
"""

from __future__ import annotations

import numpy as np


def motion_matrices_2d(
    zoom: np.ndarray,
    angle: np.ndarray,
    translation_x: np.ndarray,
    translation_y: np.ndarray,
    center_x: np.ndarray,
    center_y: np.ndarray,
    *,
    width: int,
    height: int,
) -> np.ndarray:
    """Per-frame warp matrices ``M_n`` (shape ``(frames, 3, 3)``), vectorised over frames.

    ``center_x`` / ``center_y`` are fractions of the width and height (Deforum's ``transform_center_*``).
    ``angle`` is in degrees, counter-clockwise on screen, as in OpenCV.
    """
    frames = len(zoom)
    radians = np.deg2rad(angle)
    alpha = zoom * np.cos(radians)
    beta = zoom * np.sin(radians)
    cx = center_x * width
    cy = center_y * height
    # R: rotation + scale about (cx, cy), the matrix cv2.getRotationMatrix2D builds, for all frames at once.
    rotate = np.zeros((frames, 3, 3))
    rotate[:, 0, 0] = alpha
    rotate[:, 0, 1] = beta
    rotate[:, 0, 2] = (1 - alpha) * cx - beta * cy
    rotate[:, 1, 0] = -beta
    rotate[:, 1, 1] = alpha
    rotate[:, 1, 2] = beta * cx + (1 - alpha) * cy
    rotate[:, 2, 2] = 1.0
    translate = np.broadcast_to(np.eye(3), (frames, 3, 3)).copy()
    translate[:, 0, 2] = translation_x
    translate[:, 1, 2] = translation_y
    return rotate @ translate


def cumulative_camera(motion: np.ndarray) -> np.ndarray:
    """``C_0 = I`` and ``C_n = M_n · C_{n−1}``: where each frame's camera has moved since frame 0."""
    cameras = np.empty_like(motion)
    current = np.eye(3)
    cameras[0] = current
    for n in range(1, len(motion)):
        current = motion[n] @ current
        # Re-normalise the projective scale so long zooms stay finite in float64.
        current = current / current[2, 2]
        cameras[n] = current
    return cameras
