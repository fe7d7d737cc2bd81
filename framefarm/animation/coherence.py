"""Deforum's frame-to-frame image operations, each a small pure function on numpy images (RGB, uint8, H×W×3).

In a Deforum chain the previous frame is warped by the camera, then (in Deforum's order) colour-matched, turned to
grey if asked, scaled by ``contrast``, sharpened (anti-blur), noised, and handed to img2img; with a cadence > 1 the
frames between two diffused frames are in-betweens of them. Where Deforum misbehaves, these functions do not:

* :func:`match_colors` converts RGB with RGB codes (Deforum hands BGR pixels to ``COLOR_RGB2LAB``/``RGB2HSV``, so
  its LAB and HSV matching works on swapped channels); the matched values are truncated to bytes exactly as Deforum's
  ``skimage.exposure.match_histograms`` does for 8-bit frames (bit for bit: the tests compare with scikit-image);
* :func:`adjust_contrast` clips (Deforum's ``uint8`` cast wraps 256 to 0: bright pixels turn black);
* :func:`unsharp_mask` measures the threshold on signed differences (Deforum's ``uint8`` subtraction wraps) and
  refuses an even or non-positive kernel (OpenCV would raise deep inside the render);
* :func:`add_noise` draws from an explicit seed with numpy (Deforum uses a global torch generator).

Only numpy and OpenCV: no torch, no skimage.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from framefarm.errors import InputError

__all__ = [
    "FLOW_METHODS",
    "adjust_contrast",
    "add_noise",
    "cadence_blend",
    "cadence_flow_blend",
    "color_reference_index",
    "force_grayscale",
    "match_colors",
    "match_histogram",
    "noise_image",
    "optical_flow",
    "perlin_noise",
    "unsharp_mask",
    "warp_by_flow",
]

ColorSpace = Literal["RGB", "HSV", "LAB"]
FLOW_METHODS = ("DIS Medium", "DIS Fine", "Farneback")


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(name, f"{image.dtype} array of shape {image.shape}", "must be an RGB uint8 image (H, W, 3)")
    return image


# ----- Colour coherence -------------------------------------------------------------------------------------------


def match_histogram(channel: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Histogram matching of one integer channel: each value moves to the reference value at the same quantile.

    The classic CDF-matching method (as ``skimage.exposure.match_histograms`` does it for integer images): source
    quantiles are interpolated into the reference's quantile→value curve. Returns float64.
    """
    channel = np.asarray(channel)
    return _histogram_lookup(channel, reference)[channel]


def _histogram_lookup(channel: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """:func:`match_histogram` as a table: value → matched value (float64), for values 0…255."""
    channel, reference = np.asarray(channel), np.asarray(reference)
    source_counts = np.bincount(channel.ravel(), minlength=256)
    reference_counts = np.bincount(reference.ravel(), minlength=256)
    reference_values = np.flatnonzero(reference_counts)
    source_quantiles = np.cumsum(source_counts) / channel.size
    reference_quantiles = np.cumsum(reference_counts[reference_values]) / reference.size
    return np.interp(source_quantiles, reference_quantiles, reference_values)


def match_colors(image: np.ndarray, reference: np.ndarray, mode: ColorSpace = "LAB") -> np.ndarray:
    """Deforum's colour coherence: per-channel histogram matching of ``image`` to ``reference`` in ``mode``'s space.

    Args:
        image: RGB uint8 frame to correct.
        reference: RGB uint8 reference (frame 0's output, an image, or a video frame); any size.
        mode: ``"RGB"``, ``"HSV"`` or ``"LAB"`` (OpenCV's 8-bit conversions of RGB data).

    Returns:
        The matched RGB uint8 frame.
    """
    image, reference = _check_image(image), _check_image(reference, "reference")
    if mode == "RGB":
        to_space = from_space = None
    elif mode == "HSV":
        to_space, from_space = cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB
    elif mode == "LAB":
        to_space, from_space = cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB
    else:
        raise InputError("color_coherence.mode", mode, "is not a colour space to match in", "Use LAB, HSV or RGB")
    source = image if to_space is None else cv2.cvtColor(image, to_space)
    target = reference if to_space is None else cv2.cvtColor(reference, to_space)
    # skimage's match_histograms writes its float result into a uint8 array, which truncates toward zero: floor the
    # table (its values lie in 0…255) to give Deforum's bytes. Per value first, then looked up per pixel: the same
    # bytes as flooring the float frame, without three float64 frames (a sequential chain waits for this).
    tables = [np.floor(_histogram_lookup(source[..., c], target[..., c])).astype(np.uint8) for c in range(3)]
    matched = np.stack([tables[c][source[..., c]] for c in range(3)], axis=-1)
    return matched if from_space is None else cv2.cvtColor(matched, from_space)


def color_reference_index(frame: int, every_n: int) -> int:
    """The video frame a colour match against a video uses at ``frame``: Deforum takes a new sample every
    ``every_n`` frames (``color_coherence_video_every_N_frames``), so the last multiple of ``every_n``."""
    if every_n < 1:
        raise InputError("color_coherence.video_every_n", every_n, "must be ≥ 1")
    return frame - frame % every_n


def force_grayscale(image: np.ndarray) -> np.ndarray:
    """Deforum's ``color_force_grayscale``: luma, repeated in the three channels."""
    grey = cv2.cvtColor(_check_image(image), cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


# ----- Contrast, anti-blur, noise ---------------------------------------------------------------------------------


def adjust_contrast(image: np.ndarray, contrast: float) -> np.ndarray:
    """Multiply the pixels by ``contrast``, round, and clip to 0…255 (Deforum wraps instead of clipping)."""
    if not np.isfinite(contrast) or contrast < 0:
        raise InputError("motion.contrast", contrast, "must be a finite number ≥ 0")
    image = _check_image(image)
    return np.clip(np.rint(image * float(contrast)), 0, 255).astype(np.uint8)


def unsharp_mask(image: np.ndarray, kernel: int, sigma: float, amount: float, threshold: float = 0.0) -> np.ndarray:
    """Deforum's anti-blur: ``clip((amount + 1)·img − amount·GaussianBlur(img, kernel, sigma))``, rounded.

    Pixels whose difference from the blurred image is under ``threshold`` keep their value; ``amount`` 0 returns
    the image unchanged (as Deforum, which skips the step).

    Raises:
        InputError: a kernel that is not an odd whole number ≥ 1, or a negative sigma, amount or threshold.
    """
    image = _check_image(image)
    if isinstance(kernel, bool) or int(kernel) != kernel or kernel < 1 or int(kernel) % 2 == 0:
        raise InputError("motion.anti_blur.kernel", kernel, "must be an odd whole number ≥ 1", "Example: 5")
    for name, value in (("sigma", sigma), ("amount", amount), ("threshold", threshold)):
        if not np.isfinite(value) or value < 0:
            raise InputError(f"motion.anti_blur.{name}", value, "must be a finite number ≥ 0")
    if amount == 0:
        return image.copy()
    kernel = int(kernel)
    blurred = cv2.GaussianBlur(image, (kernel, kernel), float(sigma)).astype(np.float64)
    original = image.astype(np.float64)
    sharpened = np.clip(np.rint((amount + 1.0) * original - amount * blurred), 0, 255).astype(np.uint8)
    if threshold > 0:
        flat = np.abs(original - blurred) < threshold
        sharpened[flat] = image[flat]
    return sharpened


def perlin_noise(
    height: int, width: int, *, rng: np.random.Generator, resolution: tuple[int, int] = (8, 8), octaves: int = 4,
    persistence: float = 0.5,
) -> np.ndarray:
    """Fractal Perlin (gradient) noise in about −1…1, ``octaves`` layers, each twice the frequency and
    ``persistence`` times the amplitude of the one before (Perlin, "Improving Noise", 2002: quintic fade).

    ``resolution`` is the number of lattice cells across (height, width) in the first octave; any frame size works
    (Deforum's version needs the size to be a multiple of the lattice).
    """
    if octaves < 1 or not 0 <= persistence <= 1:
        raise InputError("perlin", (octaves, persistence), "needs octaves ≥ 1 and 0 ≤ persistence ≤ 1")
    total = np.zeros((height, width))
    amplitude = 1.0
    for octave in range(int(octaves)):
        cells_y, cells_x = resolution[0] * 2**octave, resolution[1] * 2**octave
        angles = rng.uniform(0.0, 2 * np.pi, size=(cells_y + 1, cells_x + 1))
        gx, gy = np.cos(angles), np.sin(angles)
        y = (np.arange(height) + 0.5) * cells_y / height
        x = (np.arange(width) + 0.5) * cells_x / width
        y0, x0 = np.minimum(y.astype(int), cells_y - 1), np.minimum(x.astype(int), cells_x - 1)
        fy, fx = (y - y0)[:, None], (x - x0)[None, :]

        def corner(dy: int, dx: int) -> np.ndarray:
            # Dot product of the corner's gradient with the offset from that corner. The lattice lookup is an
            # outer (row × column) gather, np.ix_: the same values as broadcast fancy indexing, a third of the time.
            rows_cols = np.ix_(y0 + dy, x0 + dx)
            return gx[rows_cols] * (fx - dx) + gy[rows_cols] * (fy - dy)

        def fade(t: np.ndarray) -> np.ndarray:
            return t * t * t * (t * (t * 6 - 15) + 10)

        u, v = fade(fx), fade(fy)
        c00, c01, c10, c11 = corner(0, 0), corner(0, 1), corner(1, 0), corner(1, 1)  # each once (a frame apiece)
        top = c00 + u * (c01 - c00)
        bottom = c10 + u * (c11 - c10)
        total += amplitude * np.sqrt(2) * (top + v * (bottom - top))
        amplitude *= persistence
    return total


def noise_image(
    height: int,
    width: int,
    seed: int,
    *,
    noise_type: Literal["uniform", "perlin"] = "perlin",
    perlin_octaves: int = 4,
    perlin_persistence: float = 0.5,
    perlin_resolution: tuple[int, int] = (8, 8),
) -> np.ndarray:
    """The ``noise_img`` (float64, ``(height, width, 3)``, 0…255) that :func:`add_noise` blends in. It depends on the
    seed and the frame size only, never on the image, so a chain can make frame n+1's while frame n diffuses."""
    if noise_type not in ("uniform", "perlin"):
        raise InputError("noise_type", noise_type, "is not a noise type", "Use uniform or perlin")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((height, width, 3))
    if noise_type == "perlin":
        pattern = perlin_noise(height, width, rng=rng, resolution=perlin_resolution, octaves=perlin_octaves,
                               persistence=perlin_persistence)
        noise *= ((pattern + 1.0) / 2.0)[..., None]
    return np.clip(0.5 + 0.5 * noise, 0.0, 1.0) * 255.0


def add_noise(
    image: np.ndarray,
    amount: float,
    seed: int,
    *,
    noise_type: Literal["uniform", "perlin"] = "perlin",
    perlin_octaves: int = 4,
    perlin_persistence: float = 0.5,
    perlin_resolution: tuple[int, int] = (8, 8),
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """Deforum's frame noise: ``img·(1 − amount) + noise_img·amount``, rounded.

    ``noise_img`` is per-pixel, per-channel standard Gaussian noise ``n`` mapped to pixels as
    ``clip(0.5 + 0.5·n, 0, 1)·255``; with ``noise_type="perlin"``, ``n`` is first scaled by ``(perlin + 1) / 2`` so
    the grain comes in soft patches. (``"uniform"`` is Deforum's name for the plain Gaussian.) The same seed gives
    the same noise, on any machine.

    Args:
        image: RGB uint8 frame.
        amount: noise weight, 0…1 (Deforum's ``noise_schedule``).
        seed: the frame's seed (Deforum uses the frame's seed).
        noise: :func:`noise_image` for this seed, size and type, made ahead of time (else made here).
    """
    image = _check_image(image)
    if not np.isfinite(amount) or not 0 <= amount <= 1:
        raise InputError("motion.noise", amount, "must be between 0 and 1")
    if noise_type not in ("uniform", "perlin"):
        raise InputError("noise_type", noise_type, "is not a noise type", "Use uniform or perlin")
    if amount == 0:
        return image.copy()
    height, width = image.shape[:2]
    if noise is None:
        noise = noise_image(height, width, seed, noise_type=noise_type, perlin_octaves=perlin_octaves,
                            perlin_persistence=perlin_persistence, perlin_resolution=perlin_resolution)
    elif noise.shape != image.shape:
        raise ValueError(f"noise of shape {noise.shape} for an image of shape {image.shape}")
    return np.clip(np.rint(image * (1.0 - amount) + noise * amount), 0, 255).astype(np.uint8)


# ----- Cadence in-betweens ----------------------------------------------------------------------------------------


def cadence_blend(previous: np.ndarray, following: np.ndarray, tween: float) -> np.ndarray:
    """A cadence in-between: ``previous·(1 − tween) + following·tween``, rounded (Deforum's turbo blend).

    ``previous`` and ``following`` are the diffused frames around the in-between, each already warped by the
    in-between frame's camera move; ``tween`` is its position between them, 0…1.
    """
    previous, following = _check_image(previous, "previous"), _check_image(following, "following")
    if previous.shape != following.shape:
        raise InputError("cadence", f"{previous.shape} and {following.shape}", "frames must have the same size")
    if not 0 <= tween <= 1:
        raise InputError("tween", tween, "must be between 0 and 1")
    blended = previous.astype(np.float64) * (1.0 - tween) + following.astype(np.float64) * tween
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def optical_flow(first: np.ndarray, second: np.ndarray, method: str = "DIS Medium") -> np.ndarray:
    """Dense optical flow from ``first`` to ``second`` (``(H, W, 2)`` float32, pixels): where each pixel of the
    first frame moves to in the second.

    Args:
        method: ``"DIS Medium"``, ``"DIS Fine"`` (OpenCV's DIS presets) or ``"Farneback"``. RAFT needs a torch
            model and belongs to the renderer.
    """
    first, second = _check_image(first, "first"), _check_image(second, "second")
    a, b = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY), cv2.cvtColor(second, cv2.COLOR_RGB2GRAY)
    if method in ("DIS Medium", "DIS Fine"):
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        if method == "DIS Fine":
            dis.setFinestScale(0)  # down to full resolution: finer and slower than Medium's finest scale of 1
        return dis.calc(a, b, None)
    if method == "Farneback":
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    if method == "RAFT":
        raise InputError("cadence_flow", method, "needs a torch model (RAFT) and is computed by the renderer",
                         f"Use one of {', '.join(FLOW_METHODS)} here")
    raise InputError("cadence_flow", method, "is not an optical-flow method", f"Use one of {', '.join(FLOW_METHODS)}")


def warp_by_flow(image: np.ndarray, flow: np.ndarray, *, border: Literal["replicate", "wrap"] = "replicate"
                 ) -> np.ndarray:
    """Move the image's content along ``flow`` (pixels, ``(H, W, 2)``): the pixel at p goes to about p + flow(p).

    A backward warp with the flow read at the destination (``dst(p) = src(p − flow(p))``), which is exact for
    constant flow and close for smooth flow.
    """
    height, width = image.shape[:2]
    flow = np.asarray(flow, dtype=np.float32)
    if flow.shape != (height, width, 2):
        raise InputError("flow", f"array of shape {flow.shape}", f"must be ({height}, {width}, 2)")
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    mode = cv2.BORDER_WRAP if border == "wrap" else cv2.BORDER_REPLICATE
    return cv2.remap(image, grid_x - flow[..., 0], grid_y - flow[..., 1], cv2.INTER_LINEAR, borderMode=mode)


def cadence_flow_blend(
    previous: np.ndarray,
    following: np.ndarray,
    tween: float,
    *,
    method: str = "DIS Medium",
    flow_factor: float = 1.0,
    border: Literal["replicate", "wrap"] = "replicate",
) -> np.ndarray:
    """A cadence in-between along optical flow (Deforum's ``optical_flow_cadence``): the flow from ``previous`` to
    ``following`` advances ``previous`` by ``tween`` of the way and takes ``following`` back by the rest, then the
    two are cross-faded like :func:`cadence_blend`. Moving content stays sharp instead of showing twice.

    Args:
        tween: position between the two frames, 0…1.
        method: see :func:`optical_flow`.
        flow_factor: scales the flow (Deforum's ``cadence_flow_factor_schedule``); 0 is the plain blend.
    """
    if not np.isfinite(flow_factor):
        raise InputError("cadence_flow_factor", flow_factor, "must be a finite number")
    flow = optical_flow(previous, following, method) * np.float32(flow_factor)
    advanced = warp_by_flow(previous, flow * np.float32(tween), border=border)
    returned = warp_by_flow(following, -flow * np.float32(1.0 - tween), border=border)
    return cadence_blend(advanced, returned, tween)
