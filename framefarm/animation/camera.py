"""Camera motion with Deforum's semantics: 2D warps, perspective flip and 3D moves, as 3×3 matrices and warps.

Matrices follow OpenCV's pixel convention (pixel centres at integer coordinates) and map frame n−1 *forward* into
frame n: ``cv2.warpPerspective(previous, M_n, size)`` draws frame n. The camera after n frames is the product
``C_n = M_n · … · M_1`` (frame 0 is the start image, unmoved); keeping the product lets the preview renderer draw any
frame directly from the start image: no blur builds up, and frames are independent, so chunks render in any order.

* **2D** (Deforum's ``anim_frame_warp_2d``): ``M = F · R · T``: translate by (tx, ty), then rotate by ``angle``
  degrees and scale by ``zoom`` about the transform centre (``cv2.getRotationMatrix2D``'s matrix), then the
  perspective flip ``F`` when it is on. Deforum means the same product but, through a misplaced argument of
  ``np.matmul``, drops ``T`` when the flip is on; framefarm keeps the translation.
* **Perspective flip**: the frame's corners, centred at the origin of a 3D plane, are rotated by ``phi`` (about x),
  ``gamma`` (about y) and ``theta`` (about z), in that order of the product ``Rx·Ry·Rz``, pushed back by
  ``h = d / (2 sin(fv/2))`` (``d`` the frame's diagonal) and projected by an OpenGL-style perspective of field of
  view ``fv``; the homography from the flat corners to the projected ones is ``F``, offset as Deforum offsets it.
  Deforum's projection matrix keeps a stray 1 in its corner, so even at zero angles ``F`` shrinks the frame by
  ``h / (h + 1)`` (0.12 % a frame at 512×512): kept, because every Deforum perspective-flip animation has it.
* **3D** (Deforum's ``anim_frame_warp_3d``): world points are the pixel grid in [−1, 1]² at depth ``z`` (1 without
  a depth map), seen by a camera of field of view ``fov`` and ``aspect_ratio`` before and after the move (rotation
  ``Rx·Ry·Rz`` from Euler angles in degrees, translation ``(−tx, ty, −tz) / 200``, in PyTorch3D's row-vector
  convention ``X·R + T``). Deforum samples each pixel at its position minus the difference of the two projections,
  evaluated at the grid point — :func:`warp_3d` does exactly that with OpenCV's ``remap``. ``near`` and ``far`` only
  scale the projected depth, never x or y, so they do not change the picture (Deforum's schedules for them are
  accepted and checked, as there).
* **3D preview**: over a plane (no depth) that sampling map is an affine map for translations and turns about the
  view axis, and close to a homography otherwise. :func:`motion_matrices_3d` gives, per frame, the homography that
  agrees with it at the frame's four corners — exact for the affine moves — so a 3D job previews as a closed-form
  camera, like a 2D one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import cv2
import numpy as np

from framefarm.errors import InputError

__all__ = [
    "camera_motion",
    "check_3d_motion",
    "cumulative_camera",
    "depth_to_z",
    "homographies_from_points",
    "motion_matrices_2d",
    "motion_matrices_3d",
    "perspective_flip_matrices",
    "rotation_matrices_xyz",
    "warp_2d",
    "warp_3d",
]

# Deforum's 3D translation unit: 200 units move the camera by the distance of the scene's plane (from Disco Diffusion).
TRANSLATION_SCALE = 1.0 / 200.0
# A scene point closer than this (in units of the plane's distance) after a move is treated as passing the camera.
MIN_DEPTH = 1e-3

DepthKind = Literal["inverse", "metric", "raw"]
SAMPLING_MODES = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
PADDING_MODES = {"border": cv2.BORDER_REPLICATE, "reflection": cv2.BORDER_REFLECT, "zeros": cv2.BORDER_CONSTANT}
BORDER_MODES = {"replicate": cv2.BORDER_REPLICATE, "wrap": cv2.BORDER_WRAP}


# ----- 2D ---------------------------------------------------------------------------------------------------------


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
    """Per-frame warp matrices ``M_n = R_n · T_n`` (shape ``(frames, 3, 3)``), vectorised over frames.

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


def rotation_matrices_xyz(x: np.ndarray, y: np.ndarray, z: np.ndarray, *, degrees: bool = True) -> np.ndarray:
    """``Rx(x) · Ry(y) · Rz(z)`` per frame (shape ``(frames, 3, 3)``): right-handed rotations about each axis.

    This is PyTorch3D's ``euler_angles_to_matrix(angles, "XYZ")``, which Deforum's 3D mode uses, and the order of
    Deforum's perspective-flip rotation.
    """
    x, y, z = (np.deg2rad(np.asarray(a, dtype=np.float64)) if degrees else np.asarray(a, dtype=np.float64)
               for a in (x, y, z))
    x, y, z = np.broadcast_arrays(x, y, z)
    out = np.zeros(x.shape + (3, 3))
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    # Rx · Ry · Rz written out.
    out[..., 0, 0] = cy * cz
    out[..., 0, 1] = -cy * sz
    out[..., 0, 2] = sy
    out[..., 1, 0] = cx * sz + sx * sy * cz
    out[..., 1, 1] = cx * cz - sx * sy * sz
    out[..., 1, 2] = -sx * cy
    out[..., 2, 0] = sx * sz - cx * sy * cz
    out[..., 2, 1] = sx * cz + cx * sy * sz
    out[..., 2, 2] = cx * cy
    return out


def homographies_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The homography taking 4 points to 4 points, per frame: ``cv2.getPerspectiveTransform``, vectorised.

    Args:
        src: ``(frames, 4, 2)`` points.
        dst: ``(frames, 4, 2)`` points.

    Returns:
        ``(frames, 3, 3)`` float64 matrices normalised to ``H[2, 2] = 1``.
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    frames = src.shape[0]
    x, y, u, v = src[..., 0], src[..., 1], dst[..., 0], dst[..., 1]
    a = np.zeros((frames, 8, 8))
    b = np.empty((frames, 8))
    # u = (h0 x + h1 y + h2) / (h6 x + h7 y + 1), v likewise with h3 h4 h5: two linear equations per point.
    a[:, 0:4, 0], a[:, 0:4, 1], a[:, 0:4, 2] = x, y, 1.0
    a[:, 0:4, 6], a[:, 0:4, 7] = -x * u, -y * u
    a[:, 4:8, 3], a[:, 4:8, 4], a[:, 4:8, 5] = x, y, 1.0
    a[:, 4:8, 6], a[:, 4:8, 7] = -x * v, -y * v
    b[:, 0:4], b[:, 4:8] = u, v
    try:
        h = np.linalg.solve(a, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        raise InputError("camera", problem="gives a degenerate warp (three of the four corners on a line)",
                         fix="Use smaller per-frame angles") from None
    return np.concatenate([h, np.ones((frames, 1))], axis=1).reshape(frames, 3, 3)


def perspective_flip_matrices(
    theta: np.ndarray, phi: np.ndarray, gamma: np.ndarray, fv: np.ndarray, *, width: int, height: int
) -> np.ndarray:
    """Deforum's perspective-flip homography per frame (shape ``(frames, 3, 3)``).

    At zero angles it is a slight shrink toward a point near the frame's centre, as in Deforum (see the comment on
    its projection below), not the identity.

    Args:
        theta: turn in the image plane (degrees), about z.
        phi: tilt about the horizontal axis (degrees), about x.
        gamma: tilt about the vertical axis (degrees), about y.
        fv: field of view of the camera that looks at the tilted frame (degrees, 0 < fv < 180).
        width, height: the frame size in pixels.

    Raises:
        InputError: a tilt that turns the frame edge-on to the viewing camera (no homography exists).
    """
    theta, phi, gamma, fv = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (theta, phi, gamma, fv)))
    frames = theta.shape[0]
    half = np.deg2rad(fv) / 2
    diagonal = np.hypot(width, height)
    side = diagonal / np.cos(half)  # the side of the square canvas Deforum projects into
    distance = diagonal / (2 * np.sin(half))  # how far the frame is pushed back from the camera
    corners = np.array([[-width / 2, height / 2], [width / 2, height / 2],
                        [width / 2, -height / 2], [-width / 2, -height / 2]])
    rotation = rotation_matrices_xyz(phi, gamma, theta)  # (frames, 3, 3)
    # Rotated corners (z = 0 before the rotation), then pushed back and projected; with the projection's focal
    # factor cot(fv/2) and the canvas scale side/2 the image point is distance * xy / depth + side/2.
    rotated = np.einsum("fij,kj->fki", rotation[:, :, :2], corners)  # (frames, 4, 3)
    # Deforum's projection matrix keeps a 1 in its bottom-right entry, so the divide is by (distance + 1 - z): at
    # zero angles the frame shrinks by distance / (distance + 1) a frame (0.12 % at 512x512, fv 53). Kept: it is
    # part of how every Deforum perspective-flip animation moves.
    # The depth stays positive (a corner is at most d/2 from the centre, and distance ≥ d/2).
    depth = distance[:, None] + 1.0 - rotated[..., 2]
    projected = distance[:, None, None] * rotated[..., :2] / depth[..., None] + side[:, None, None] / 2
    # A frame turned edge-on (a tilt of 90°) projects to a line: no homography, refuse it.
    x, y = projected[..., 0], projected[..., 1]
    area = 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))
    edge_on = area < 1e-3 * width * height
    if edge_on.any():
        frame = int(np.flatnonzero(edge_on)[0])
        raise InputError("motion.perspective_flip", problem=f"turns the frame edge-on (a tilt of about 90°) at frame "
                         f"{frame}", fix="Use per-frame angles well away from ±90°")
    flat = np.broadcast_to(corners + [width / 2, height / 2], (frames, 4, 2))
    homography = homographies_from_points(flat, projected)
    # Deforum then shifts by ((W - side)/2, (H - side)/2) before the homography (about the identity at zero angles).
    shift = np.broadcast_to(np.eye(3), (frames, 3, 3)).copy()
    shift[:, 0, 2] = (width - side) / 2
    shift[:, 1, 2] = (height - side) / 2
    return homography @ shift


# ----- 3D ---------------------------------------------------------------------------------------------------------


def _projection_offset(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, rotation: np.ndarray, shift: np.ndarray,
    fov: np.ndarray, aspect_ratio: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deforum's per-point screen offset in [−1, 1] units: projection after the move minus projection before.

    ``x, y, z`` broadcast against ``rotation[..., i, j]`` and ``shift[..., i]``. Returns ``(dx, dy, depth_after)``.
    The camera is PyTorch3D's ``FoVPerspectiveCameras``: x/y are divided by depth and scaled by
    ``1 / (aspect · tan(fov/2))`` and ``1 / tan(fov/2)``; near and far do not enter x or y.
    """
    tangent = np.tan(np.deg2rad(fov) / 2)
    scale_x, scale_y = 1.0 / (aspect_ratio * tangent), 1.0 / tangent
    # Row-vector convention X·R + T, i.e. Rᵀ·X + T on column vectors.
    after = [rotation[..., 0, k] * x + rotation[..., 1, k] * y + rotation[..., 2, k] * z + shift[..., k]
             for k in range(3)]
    with np.errstate(divide="ignore", invalid="ignore"):  # points at or behind the camera: the callers refuse them
        dx = scale_x * (after[0] / after[2] - x / z)
        dy = scale_y * (after[1] / after[2] - y / z)
    return dx, dy, after[2]


def _move_3d(values: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    rotation = rotation_matrices_xyz(values["rotation_3d_x"], values["rotation_3d_y"], values["rotation_3d_z"])
    shift = np.stack([-values["translation_x"], values["translation_y"], -values["translation_z"]], axis=-1)
    return rotation, shift * TRANSLATION_SCALE


def check_3d_motion(values: Mapping[str, np.ndarray], *, width: int, height: int) -> None:
    """Refuse a 3D move that takes the plane of the scene (depth 1) past the camera at some frame.

    Deforum divides by the depth after the move regardless, and renders garbage (or nothing) there.
    """
    rotation, shift = _move_3d(values)
    x = np.array([-1.0, 1.0, 1.0, -1.0])[None, :]
    y = np.array([-1.0, -1.0, 1.0, 1.0])[None, :]
    _, _, depth = _projection_offset(x, y, np.ones_like(x), rotation[:, None], shift[:, None],
                                     values["fov"][:, None], values["aspect_ratio"][:, None])
    bad = np.any(depth <= MIN_DEPTH, axis=1)
    if bad.any():
        frame = int(np.flatnonzero(bad)[0])
        raise InputError(
            "motion.translation_z", float(values["translation_z"][frame]),
            f"moves the camera to or past the scene's plane at frame {frame} (translation_z 200 is the plane's "
            "distance; rotations by 90° or more look away from it)",
            "Use smaller per-frame moves: each frame's move is relative to the previous frame",
        )


def motion_matrices_3d(
    translation_x: np.ndarray,
    translation_y: np.ndarray,
    translation_z: np.ndarray,
    rotation_x: np.ndarray,
    rotation_y: np.ndarray,
    rotation_z: np.ndarray,
    fov: np.ndarray,
    aspect_ratio: np.ndarray,
    *,
    width: int,
    height: int,
) -> np.ndarray:
    """Per-frame forward homographies of Deforum's 3D move over a plane (shape ``(frames, 3, 3)``).

    Each agrees with :func:`warp_3d` without a depth map at the frame's four corner pixels, so it is exact for
    translations and turns about the view axis (where Deforum's map is affine) and within a fraction of a pixel
    for the small per-frame tilts and pans animations use.
    """
    values = {"translation_x": translation_x, "translation_y": translation_y, "translation_z": translation_z,
              "rotation_3d_x": rotation_x, "rotation_3d_y": rotation_y, "rotation_3d_z": rotation_z,
              "fov": fov, "aspect_ratio": aspect_ratio}
    values = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    check_3d_motion(values, width=width, height=height)
    rotation, shift = _move_3d(values)
    corner_px = np.array([[0.0, 0.0], [width - 1.0, 0.0], [width - 1.0, height - 1.0], [0.0, height - 1.0]])
    # The grid coordinates Deforum gives those pixels: linspace(-1, 1) over columns and rows, i.e. exactly ±1.
    x = np.array([-1.0, 1.0, 1.0, -1.0])[None, :]
    y = np.array([-1.0, -1.0, 1.0, 1.0])[None, :]
    dx, dy, _ = _projection_offset(x, y, np.ones_like(x), rotation[:, None], shift[:, None],
                                   values["fov"][:, None], values["aspect_ratio"][:, None])
    # Pixel (px, py) is sampled at (px, py) - (W/2, H/2) * offset: the source of each corner.
    source = np.stack([corner_px[None, :, 0] - width / 2 * dx, corner_px[None, :, 1] - height / 2 * dy], axis=-1)
    target = np.broadcast_to(corner_px, source.shape)
    return homographies_from_points(source, target)


def depth_to_z(depth: np.ndarray | None, kind: DepthKind = "inverse") -> np.ndarray | None:
    """Scene depth for :func:`warp_3d` from a depth model's output, as Deforum prepares it.

    Args:
        depth: ``(H, W)`` depth-model output, or ``None``.
        kind: ``"inverse"`` (MiDaS-style relative inverse depth, bright = near): normalised to 0…1, histogram-
            equalised (1 024 bins) and turned into ``z = 2 − d``; ``"metric"`` (Zoe, AdaBins, LeReS, Depth Anything):
            the same normalisation, ``z = d + 1``; ``"raw"``: used as it is (Deforum's "(old)" algorithms).

    Returns:
        float64 ``z`` in 1…2 (inverse/metric), or ``None`` when there is no depth or it is constant (a flat scene:
        Deforum's fallback too, so the warp is a pure camera move).

    Raises:
        InputError: a depth map that is not 2D or holds NaN or infinity (Deforum silently falls back to flat).
    """
    if depth is None:
        return None
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise InputError("depth", f"array of shape {depth.shape}", "must be a 2D (height, width) depth map")
    if not np.isfinite(depth).all():
        raise InputError("depth", "depth map", "holds NaN or infinite values",
                         "Check the depth model's output; pass depth=None for a pure camera move")
    if kind == "raw":
        return depth
    low, high = depth.min(), depth.max()
    if high == low:
        return None
    normalised = (depth - low) / (high - low)
    # Histogram equalisation: each value is replaced by the share of pixels at or below its bin.
    counts, edges = np.histogram(normalised, bins=1024, range=(0.0, 1.0))
    cdf = np.cumsum(counts) / normalised.size
    equalised = np.interp(normalised, edges[:-1], cdf)
    if kind == "inverse":
        return 2.0 - equalised
    if kind == "metric":
        return equalised + 1.0
    raise InputError("depth kind", kind, "is not a depth kind", "Use inverse, metric or raw")


def warp_3d(
    image: np.ndarray,
    depth: np.ndarray | None,
    *,
    translation: tuple[float, float, float],
    rotation: tuple[float, float, float],
    fov: float,
    near: float = 200.0,
    far: float = 10000.0,
    aspect_ratio: float = 1.0,
    depth_kind: DepthKind = "inverse",
    sampling_mode: Literal["bicubic", "bilinear", "nearest"] = "bicubic",
    padding_mode: Literal["border", "reflection", "zeros"] = "border",
) -> np.ndarray:
    """One frame of Deforum's 3D camera move, with numpy and OpenCV (no torch).

    Args:
        image: ``(H, W, C)`` uint8 (or float) image, the previous frame.
        depth: the previous frame's depth-model output (see :func:`depth_to_z` for ``depth_kind``), or ``None``
            for a plane: a pure camera move.
        translation: ``(translation_x, translation_y, translation_z)`` in Deforum units for this frame.
        rotation: ``(rotation_3d_x, rotation_3d_y, rotation_3d_z)`` in degrees for this frame.
        fov: field of view in degrees (0 < fov < 180).
        near, far: the camera's clipping planes (0 < near < far); checked only, as they do not move x or y.
        aspect_ratio: the camera's aspect ratio (Deforum's ``aspect_ratio_schedule``, 1 by default).
        sampling_mode: ``grid_sample``'s filter, done with OpenCV's ``remap`` (bicubic, bilinear or nearest).
        padding_mode: what is sampled outside the frame: ``border`` (edge pixels), ``reflection`` or ``zeros``.

    Returns:
        The warped image, same shape and dtype.

    Raises:
        InputError: bad camera parameters or a move that passes the scene.
    """
    if not (0 < fov < 180):
        raise InputError("fov", fov, "must be strictly between 0 and 180 degrees", "Example: 70")
    if not (0 < near < far):
        raise InputError("near/far", (near, far), "must satisfy 0 < near < far", "Example: near 200, far 10000")
    if aspect_ratio <= 0:
        raise InputError("aspect_ratio", aspect_ratio, "must be > 0", "Example: 1")
    if sampling_mode not in SAMPLING_MODES:
        raise InputError("sampling_mode", sampling_mode, "is not a sampling mode", f"Use one of {list(SAMPLING_MODES)}")
    if padding_mode not in PADDING_MODES:
        raise InputError("padding_mode", padding_mode, "is not a padding mode", f"Use one of {list(PADDING_MODES)}")
    height, width = image.shape[:2]
    z = depth_to_z(depth, depth_kind)
    if z is not None and z.shape != (height, width):
        raise InputError("depth", f"array of shape {z.shape}", f"must match the image ({height}, {width})")
    if z is not None and np.any(z <= 0):
        raise InputError("depth", "depth map", "must give a positive depth everywhere")
    values = {"rotation_3d_x": np.array(rotation[0], dtype=np.float64),
              "rotation_3d_y": np.array(rotation[1], dtype=np.float64),
              "rotation_3d_z": np.array(rotation[2], dtype=np.float64),
              "translation_x": np.array(translation[0], dtype=np.float64),
              "translation_y": np.array(translation[1], dtype=np.float64),
              "translation_z": np.array(translation[2], dtype=np.float64)}
    matrix, shift = _move_3d(values)
    x = np.linspace(-1.0, 1.0, width)[None, :]
    y = np.linspace(-1.0, 1.0, height)[:, None]
    dx, dy, after = _projection_offset(x, y, np.ones((height, width)) if z is None else z, matrix, shift,
                                       np.float64(fov), np.float64(aspect_ratio))
    if np.any(after <= MIN_DEPTH):
        raise InputError("translation_z", translation[2], "moves the camera to or past the scene",
                         "Use a smaller per-frame move")
    map_x = (np.arange(width)[None, :] - width / 2 * dx).astype(np.float32)
    map_y = (np.arange(height)[:, None] - height / 2 * dy).astype(np.float32)
    return cv2.remap(image, map_x, map_y, SAMPLING_MODES[sampling_mode], borderMode=PADDING_MODES[padding_mode],
                     borderValue=0)


# ----- Putting it together --------------------------------------------------------------------------------------


def camera_motion(
    values: Mapping[str, np.ndarray],
    *,
    width: int,
    height: int,
    mode: Literal["2D", "3D"] = "2D",
    perspective_flip: bool = False,
) -> np.ndarray:
    """Each frame's forward camera move ``M_n`` (shape ``(frames, 3, 3)``) from a job's evaluated schedules.

    Args:
        values: the job's per-frame values (``evaluate_job_schedules``): zoom, angle, translation_x/y,
            transform_center_x/y in 2D; translation_x/y/z, rotation_3d_x/y/z, fov, aspect_ratio in 3D; and
            ``perspective_flip.theta/phi/gamma/fv`` when the flip is on.
        width, height: the frame size.
        mode: Deforum's ``animation_mode``; 3D moves over a plane here (the closed-form preview camera).
        perspective_flip: apply the flip (after the 2D warp; before the 3D move, as Deforum does).
    """
    flip = None
    if perspective_flip:
        flip = perspective_flip_matrices(values["perspective_flip.theta"], values["perspective_flip.phi"],
                                         values["perspective_flip.gamma"], values["perspective_flip.fv"],
                                         width=width, height=height)
    if mode == "2D":
        motion = motion_matrices_2d(values["zoom"], values["angle"], values["translation_x"], values["translation_y"],
                                    values["transform_center_x"], values["transform_center_y"],
                                    width=width, height=height)
        return motion if flip is None else flip @ motion
    if mode == "3D":
        motion = motion_matrices_3d(values["translation_x"], values["translation_y"], values["translation_z"],
                                    values["rotation_3d_x"], values["rotation_3d_y"], values["rotation_3d_z"],
                                    values["fov"], values["aspect_ratio"], width=width, height=height)
        return motion if flip is None else motion @ flip
    raise InputError("animation_mode", mode, "is not a camera mode", "Use 2D or 3D")


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


def warp_2d(image: np.ndarray, matrix: np.ndarray, *, border: Literal["replicate", "wrap"] = "replicate") -> np.ndarray:
    """Apply one frame's forward 3×3 camera matrix to an image (Deforum's 2D warp: linear filter, its border modes)."""
    if border not in BORDER_MODES:
        raise InputError("motion.border", border, "is not a border mode", f"Use one of {list(BORDER_MODES)}")
    height, width = image.shape[:2]
    return cv2.warpPerspective(image, np.asarray(matrix, dtype=np.float64), (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=BORDER_MODES[border])
