"""Depth for the Deforum 3D warp: a transformers depth-estimation model (DPT / MiDaS-DPT, Depth Anything, …) loaded
from a local folder, never the hub.

Where the folder is: ``<annotators>/depth/<algorithm>`` (``annotators`` is ``$FRAMEFARM_ANNOTATORS`` or
``<models folder>/annotators``, as for the ControlNet preprocessors), else ``<annotators>/depth`` itself. It holds a
transformers ``config.json`` and its weights (``save_pretrained``'s layout). Why transformers rather than
controlnet-aux's MiDaS: ``AutoModelForDepthEstimation`` reads DPT, DPT-Hybrid (MiDaS 3), BEiT-DPT (MiDaS 3.1),
Depth Anything V1/V2 and ZoeDepth folders with one loader, with no torchvision (which breaks on our CPU torch) and
no hub download; controlnet-aux also imports every detector (~11 s).

The model output is handed to :func:`framefarm.animation.camera.warp_3d` as it is; that function normalises and
equalises it (Deforum's preparation). Frames are predicted one at a time on the renderer's device, in float32, so
the depth (and with it the chain) is deterministic on a given device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framefarm.cache import LruCache
from framefarm.errors import InputError, RenderError

# ImageNet statistics: what DPT and Depth Anything were trained with (their image processors use the same numbers).
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# Depth models are 0.1-1.3 GB and a job uses one algorithm; two covers a worker switching between jobs. Loaded
# under the cache's lock, so chains starting together load a model once.
DEPTH_MODELS_CACHED = 2
_models: LruCache[str, object] = LruCache(DEPTH_MODELS_CACHED, name="depth models")


def depth_kind(algorithm: str) -> str:
    """How :func:`~framefarm.animation.camera.depth_to_z` reads an algorithm's output (docs/deforum.md)."""
    if algorithm.endswith("(old)"):
        return "raw"
    return "inverse" if algorithm.startswith("Midas") else "metric"


def depth_folder(annotators: Path | None, algorithm: str) -> Path:
    """The folder of the depth model for ``algorithm``, or an InputError saying where to put it."""
    candidates = [] if annotators is None else [annotators / "depth" / algorithm, annotators / "depth"]
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    where = " or ".join(str(c) for c in candidates) or "<models folder>/annotators/depth/" + algorithm
    raise InputError("depth.algorithm", algorithm,
                     f"3D depth warping needs a depth model, and none was found in {where}",
                     "Save a transformers depth model there (config.json + weights, e.g. "
                     "DPTForDepthEstimation.save_pretrained), set FRAMEFARM_ANNOTATORS, or set depth.enabled = false "
                     "for a pure camera move")


class DepthModel:
    """A loaded depth model: ``predict(rgb uint8) -> (H, W) float64`` depth at the image's size."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.model = _models.get_or_load(str(folder), lambda: _load(folder), load_under_lock=True)

    def predict(self, image: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        height, width = image.shape[:2]
        config = self.model.config
        # The backbone's patch size decides which input sizes work; round the frame to a multiple of it (at least 4
        # patches a side). Interpolation here is torch's, deterministic on CPU.
        patch = int(getattr(getattr(config, "backbone_config", None) or config, "patch_size", 16) or 16)
        size_h = max(4 * patch, round(height / patch) * patch)
        size_w = max(4 * patch, round(width / patch) * patch)
        pixels = (image.astype(np.float32) / 255.0 - _MEAN) / _STD
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        tensor = F.interpolate(tensor, size=(size_h, size_w), mode="bicubic", align_corners=False)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            depth = self.model(pixel_values=tensor.to(device)).predicted_depth
        depth = F.interpolate(depth[:, None].float(), size=(height, width), mode="bicubic", align_corners=False)
        result = depth[0, 0].double().cpu().numpy()
        if not np.isfinite(result).all():
            raise RenderError(f"the depth model in {self.folder} returned NaN or infinity")
        return result


def _load(folder: Path):
    from framefarm.renderers.models.loader import go_offline, resolve_device

    go_offline()
    try:
        from transformers import AutoModelForDepthEstimation

        model = AutoModelForDepthEstimation.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types; report with the folder
        raise InputError("depth.algorithm", str(folder), f"could not be loaded as a transformers depth model ({exc})",
                         "Use a folder written by save_pretrained of a depth-estimation model") from None
    return model.to(resolve_device()).float().eval()
