"""Upscaling frames: Lanczos (OpenCV) by default, ESRGAN-family models from local weight files through spandrel.

Specs, as ``--upscale`` and ``output.upscale`` take them:

* ``"2"``, ``"1.5"``, ``"lanczos:2"`` — Lanczos resampling (OpenCV ``INTER_LANCZOS4``, 8×8 taps) by that factor;
* ``"models/4x-UltraSharp.pth"`` (``.pth``, ``.pt``, ``.ckpt``, ``.safetensors``) — a model spandrel recognises by
  its weights (ESRGAN, Real-ESRGAN, Real-ESRGAN compact video models, SwinIR, …); its scale comes from the weights.

spandrel is optional: it requires torchvision (its LaMa and RestoreFormer architectures import it), which the CPU
dev venv deliberately leaves out. It is imported only when a model spec is used, with a clear error when missing.

Models run tiled (balanced tiles of at most ``tile`` pixels overlapping by at least ``2 × overlap``, each tile
contributing only its centre, so seams fall where both neighbours saw ``overlap`` pixels of context), batched (tiles
of several frames share one forward pass), on the GPU when there is one and in fp16 where the architecture supports
it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from framefarm.errors import InputError, RenderError

MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


@dataclass(frozen=True)
class UpscaleSpec:
    """What to upscale with.

    Attributes:
        method: ``"lanczos"`` or ``"model"``.
        factor: the Lanczos factor (for a model, its scale is read from the weights; ``0`` until loaded).
        model: the weight file for ``"model"``.
        tile: tile side in input pixels (models only; 0: whole frames).
        overlap: context pixels each tile sees beyond the part it contributes.
        batch: tiles per forward pass.
    """

    method: Literal["lanczos", "model"] = "lanczos"
    factor: float = 2.0
    model: Path | None = None
    tile: int = 512
    overlap: int = 16
    batch: int = 4


def parse_upscale(spec: str | float | int | None, *, field: str = "--upscale",
                  check_file: bool = True) -> UpscaleSpec | None:
    """Parse an upscale spec (see the module docstring); ``None``, ``""``, ``"1"`` and ``"none"`` mean no upscale.

    ``check_file=False`` checks only the syntax (a job file is validated where the model may not be).
    """
    if spec is None:
        return None
    text = str(spec).strip()
    if text.lower() in ("", "none", "off", "1", "1.0", "lanczos:1"):
        return None
    if text.lower().endswith(MODEL_SUFFIXES):
        path = Path(text).expanduser()
        if check_file and not path.is_file():
            raise InputError(field, text, "no such model file",
                             "Give the path of an ESRGAN-family .pth/.safetensors file, or a factor such as 2")
        return UpscaleSpec(method="model", factor=0.0, model=path)
    method, _, factor_text = text.rpartition(":")
    if method.lower() not in ("", "lanczos"):
        raise InputError(field, text, "is not an upscale spec",
                         "Use a factor (2, 1.5), lanczos:2, or the path of a .pth/.safetensors model")
    try:
        factor = float(factor_text)
    except ValueError:
        raise InputError(field, text, "is not an upscale spec",
                         "Use a factor (2, 1.5), lanczos:2, or the path of a .pth/.safetensors model") from None
    if not 0.1 <= factor <= 16:
        raise InputError(field, text, "factor must be between 0.1 and 16", "Example: --upscale 2")
    return UpscaleSpec(method="lanczos", factor=factor)


def scaled_size(width: int, height: int, factor: float) -> tuple[int, int]:
    """Frame size after scaling by ``factor`` (rounded to whole pixels)."""
    return max(1, round(width * factor)), max(1, round(height * factor))


def lanczos(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize one frame to ``width``×``height``: Lanczos up, area-averaging down (Lanczos aliases when shrinking)."""
    if frame.shape[1] == width and frame.shape[0] == height:
        return frame
    shrinking = width < frame.shape[1] and height < frame.shape[0]
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4)


# ---------------------------------------------------------------------------------------------------------------
# Model upscaling (spandrel)


def load_spandrel_model(path: Path, *, device: str | None = None, half: bool | None = None) -> Any:
    """Load an image-to-image model with spandrel, on ``device`` (CUDA when there is one), fp16 where supported."""
    try:
        import spandrel
    except ImportError as exc:
        raise RenderError(
            f"upscaling with the model {path} needs the optional package spandrel ({exc}). Install it with "
            "`pip install spandrel` (it requires torchvision: on the CPU dev venv that means the larger torch build, "
            "see README 'Why this torch'), or use --upscale lanczos:2") from None
    import torch

    try:
        descriptor = spandrel.ModelLoader().load_from_file(str(path))
    except Exception as exc:  # spandrel raises several types for weights it does not recognise
        raise InputError("upscale", str(path), f"is not a model spandrel can load ({type(exc).__name__}: {exc})",
                         "Give an ESRGAN / Real-ESRGAN / SwinIR .pth or .safetensors file") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise InputError("upscale", str(path), f"is a model for {descriptor.purpose}, not for upscaling",
                         "Give an ESRGAN-family super-resolution model")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    descriptor.to(device).eval()
    if half is None:
        half = device.startswith("cuda") and descriptor.supports_half
    if half:
        descriptor.half()
    return descriptor


def tile_layout(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """Tile size and start offsets covering ``length`` with at most ``tile`` pixels a tile.

    Tiles are balanced (all the same size, the fewest that fit, consecutive ones sharing at least ``2·overlap``
    pixels): 540 rows in 512-pixel tiles are two tiles of 286, not 512 + 512 overlapping by 484.
    """
    if length <= tile:
        return length, [0]
    count = math.ceil((length - 2 * overlap) / max(1, tile - 2 * overlap))
    size = min(tile, math.ceil((length + (count - 1) * 2 * overlap) / count))
    stride = (length - size) / (count - 1)
    return size, sorted({round(i * stride) for i in range(count)})


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles of :func:`tile_layout`."""
    return tile_layout(length, tile, overlap)[1]


def _cores(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    # Each tile contributes [a, b): seams sit in the middle of the overlap with the next tile.
    bounds = [0]
    for left, right in zip(starts, starts[1:]):
        bounds.append((right + min(left + tile, length)) // 2)
    bounds.append(length)
    return list(zip(bounds, bounds[1:]))


class ModelUpscaler:
    """Runs a spandrel (or any ``tensor → tensor`` ×``scale``) model over frames, tiled and batched.

    Args:
        model: callable taking a float ``(N, 3, H, W)`` tensor in [0, 1] and returning ``(N, 3, H·s, W·s)``;
            a spandrel ``ImageModelDescriptor`` is one.
        scale: the model's integer scale.
        tile, overlap, batch: see :class:`UpscaleSpec`.
        device, dtype: where and in which precision tensors go (taken from the model's parameters by default).
    """

    def __init__(self, model: Any, scale: int, *, tile: int = 512, overlap: int = 16, batch: int = 4,
                 device: Any = None, dtype: Any = None) -> None:
        import torch

        self.model, self.scale, self.batch = model, int(scale), max(1, batch)
        self.tile, self.overlap = tile, overlap
        parameters = list(model.model.parameters()) if hasattr(model, "model") else []
        if hasattr(model, "parameters"):
            parameters = parameters or list(model.parameters())
        self.device = device or (parameters[0].device if parameters else torch.device("cpu"))
        self.dtype = dtype or (parameters[0].dtype if parameters else torch.float32)

    def tiles_per_frame(self, width: int, height: int) -> int:
        tile = self.tile if self.tile > 0 else max(height, width)
        return len(tile_starts(height, tile, self.overlap)) * len(tile_starts(width, tile, self.overlap))

    def upscale_batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Upscale frames of one size together (alpha, if any, is resized with Lanczos).

        The frames go to the device once as uint8; tiles are cut, run and stitched there, and each finished frame
        comes back once as uint8: the host only copies.
        """
        import torch

        height, width = frames[0].shape[:2]
        tile = self.tile if self.tile > 0 else max(height, width)
        (th, ys), (tw, xs) = tile_layout(height, tile, self.overlap), tile_layout(width, tile, self.overlap)
        y_cores, x_cores = dict(zip(ys, _cores(ys, th, height))), dict(zip(xs, _cores(xs, tw, width)))
        jobs = [(f, y, x) for f in range(len(frames)) for y in ys for x in xs]
        s = self.scale
        with torch.inference_mode():
            pixels = torch.from_numpy(np.stack([np.ascontiguousarray(f[..., :3]) for f in frames])).to(self.device)
            images = pixels.permute(0, 3, 1, 2).to(self.dtype).div_(255.0)  # (N, 3, H, W) in [0, 1]
            result = torch.empty((len(frames), 3, height * s, width * s), dtype=torch.uint8, device=self.device)
            for start in range(0, len(jobs), self.batch):
                chunk = jobs[start:start + self.batch]
                batch = torch.stack([images[f, :, y:y + th, x:x + tw] for f, y, x in chunk])
                out = self.model(batch).float().clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
                for (f, y, x), tile_out in zip(chunk, out):
                    (y0, y1), (x0, x1) = y_cores[y], x_cores[x]
                    result[f, :, y0 * s:y1 * s, x0 * s:x1 * s] = \
                        tile_out[:, (y0 - y) * s:(y1 - y) * s, (x0 - x) * s:(x1 - x) * s]
            host = result.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        results = list(host)
        for f, frame in enumerate(frames):
            if frame.shape[2] == 4:
                alpha = cv2.resize(frame[..., 3], (width * s, height * s), interpolation=cv2.INTER_LANCZOS4)
                results[f] = np.dstack([results[f], alpha])
        return results

    def __call__(self, frames: Iterable[np.ndarray], *, frames_per_batch: int = 1) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        for frame in frames:
            pending.append(frame)
            if len(pending) >= frames_per_batch:
                yield from self.upscale_batch(pending)
                pending = []
        if pending:
            yield from self.upscale_batch(pending)


@dataclass
class Upscaler:
    """A ready upscaler: the factor it applies and the function that applies it to a frame stream."""

    spec: UpscaleSpec
    scale: float
    model: ModelUpscaler | None = None

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        if self.model is not None:
            return width * self.model.scale, height * self.model.scale
        return scaled_size(width, height, self.scale)

    def __call__(self, frames: Iterable[np.ndarray], width: int, height: int) -> Iterator[np.ndarray]:
        if self.model is not None:
            # Small frames: batch several frames' tiles into one pass; large ones have enough tiles of their own.
            per_batch = max(1, self.model.batch // self.model.tiles_per_frame(width, height))
            yield from self.model(frames, frames_per_batch=per_batch)
            return
        out_w, out_h = self.output_size(width, height)
        for frame in frames:
            yield lanczos(frame, out_w, out_h)


def make_upscaler(spec: UpscaleSpec | None) -> Upscaler | None:
    """Load what ``spec`` needs (a model, for a model spec) and return the upscaler, or ``None`` for no upscale."""
    if spec is None:
        return None
    if spec.method == "lanczos":
        return Upscaler(spec=spec, scale=spec.factor)
    descriptor = load_spandrel_model(spec.model)
    tile = spec.tile
    if getattr(descriptor.tiling, "name", "") == "INTERNAL":
        tile = 0  # the model needs the whole image (it tiles internally or uses global context)
    runner = ModelUpscaler(descriptor, descriptor.scale, tile=tile, overlap=spec.overlap, batch=spec.batch)
    return Upscaler(spec=spec, scale=float(descriptor.scale), model=runner)
