"""ControlNet preprocessors ("annotators"): a source frame → the control image a ControlNet unit reads.

Weight-free ones are implemented here with OpenCV, after controlnet-aux's algorithms (``CannyDetector``,
``ContentShuffleDetector``, ``LineartStandardDetector``): controlnet-aux's ``__init__`` imports every detector,
several of which need torchvision, which the CPU dev/CI venv deliberately lacks (README, "Why this torch") — so
``import controlnet_aux`` fails there, and these three must not depend on it. They work at the frame's own size.

The ones that need weights (depth, openpose, lineart, softedge, normal, mlsd, …) go through controlnet-aux, imported
only when such a unit is used (importing it takes ~11 s), reading the annotator weights from a local folder:
``$FRAMEFARM_ANNOTATORS``, else ``<models folder>/annotators``. A missing package or file is an error naming it.

Extensions: a preprocessor is a callable ``(image, *, seed, settings) -> image`` (RGB uint8 in and out, same size)
registered under the ``framefarm.preprocessors`` entry-point group; the built-ins register the same way in
framefarm's own ``pyproject.toml`` (:data:`BUILTIN` is the fallback for a source tree without installed metadata).
A preprocessor's name and ``VERSION`` attribute belong to the frame key through the renderer version, so change
``VERSION`` when its output changes.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from framefarm.cache import LruCache
from framefarm.errors import InputError, RenderError

ENTRY_POINT_GROUP = "framefarm.preprocessors"
ANNOTATORS_ENV = "FRAMEFARM_ANNOTATORS"


@dataclass(frozen=True)
class PreprocessSettings:
    """What a preprocessor may read besides the image: thresholds from the unit, the annotator folder."""

    threshold_a: float | None = None
    threshold_b: float | None = None
    annotators: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Preprocessor(Protocol):
    def __call__(self, image: np.ndarray, *, seed: int, settings: PreprocessSettings) -> np.ndarray: ...


def _three_channels(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2) if gray.ndim == 2 else gray


# ---------------------------------------------------------------------------------------------------------------
# Weight-free


def none(image: np.ndarray, *, seed: int, settings: PreprocessSettings) -> np.ndarray:
    """The frame itself is the control image (for ControlNets fed pre-made maps, or tile/ip2p models)."""
    return image


def canny(image: np.ndarray, *, seed: int, settings: PreprocessSettings) -> np.ndarray:
    """Canny edges (thresholds ``threshold_a``/``threshold_b``, A1111's defaults 100/200), white on black."""
    low = 100 if settings.threshold_a is None else settings.threshold_a
    high = 200 if settings.threshold_b is None else settings.threshold_b
    return _three_channels(cv2.Canny(image, low, high))


def shuffle(image: np.ndarray, *, seed: int, settings: PreprocessSettings) -> np.ndarray:
    """Content shuffle: the frame warped by a smooth random flow (controlnet-aux ``ContentShuffleDetector``).

    The flow comes from the frame's seed, so a re-render gives the same control image (controlnet-aux draws from
    numpy's global generator).
    """
    height, width = image.shape[:2]
    rng = np.random.default_rng(seed)
    scale = 256  # the flow's feature size in pixels, controlnet-aux's default

    def noise_disk() -> np.ndarray:
        noise = rng.uniform(0.0, 1.0, size=(height // scale + 2, width // scale + 2))
        noise = cv2.resize(noise, (width + 2 * scale, height + 2 * scale), interpolation=cv2.INTER_CUBIC)
        noise = noise[scale:scale + height, scale:scale + width]
        noise = noise - noise.min()
        return noise / max(float(noise.max()), 1e-12)

    flow_x = (noise_disk() * (width - 1)).astype(np.float32)
    flow_y = (noise_disk() * (height - 1)).astype(np.float32)
    return cv2.remap(image, flow_x, flow_y, cv2.INTER_LINEAR)


def lineart_standard(image: np.ndarray, *, seed: int, settings: PreprocessSettings) -> np.ndarray:
    """Line art from a blurred-difference filter (controlnet-aux ``LineartStandardDetector``): dark lines → white."""
    sigma = 6.0 if settings.threshold_a is None else settings.threshold_a
    threshold = 8.0 if settings.threshold_b is None else settings.threshold_b
    pixels = image.astype(np.float32)
    blurred = cv2.GaussianBlur(pixels, (0, 0), sigma)
    intensity = np.min(blurred - pixels, axis=2).clip(0, 255)
    strong = intensity[intensity > threshold]
    intensity /= max(16.0, float(np.median(strong)) if strong.size else 16.0)
    intensity *= 127
    return _three_channels(intensity.clip(0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------------------------
# Through controlnet-aux, with local weights


@dataclass(frozen=True)
class AuxAnnotator:
    """A controlnet-aux detector: its module and class, and the files its ``from_pretrained(folder)`` reads."""

    module: str
    cls: str
    files: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    VERSION: str = "1"

    def __call__(self, image: np.ndarray, *, seed: int, settings: PreprocessSettings) -> np.ndarray:
        detector = _aux_detector(self, settings.annotators)
        from PIL import Image

        height, width = image.shape[:2]
        result = detector(Image.fromarray(image), detect_resolution=min(height, width),
                          image_resolution=min(height, width), output_type="np", **self.kwargs)
        result = np.asarray(result)
        if result.dtype != np.uint8:
            result = np.clip(result * (255 if result.max() <= 1.0 else 1), 0, 255).astype(np.uint8)
        result = _three_channels(result)
        if result.shape[:2] != (height, width):
            result = cv2.resize(result, (width, height), interpolation=cv2.INTER_LINEAR)
        return result


AUX: dict[str, AuxAnnotator] = {
    "depth": AuxAnnotator("controlnet_aux.midas", "MidasDetector", ("dpt_hybrid-midas-501f0c75.pt",)),
    "depth_leres": AuxAnnotator("controlnet_aux.leres", "LeresDetector", ("res101.pth", "latest_net_G.pth")),
    "depth_zoe": AuxAnnotator("controlnet_aux.zoe", "ZoeDetector", ("ZoeD_M12_N.pt",)),
    "openpose": AuxAnnotator("controlnet_aux.open_pose", "OpenposeDetector",
                             ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")),
    "lineart": AuxAnnotator("controlnet_aux.lineart", "LineartDetector", ("sk_model.pth", "sk_model2.pth")),
    "lineart_anime": AuxAnnotator("controlnet_aux.lineart_anime", "LineartAnimeDetector", ("netG.pth",)),
    "softedge": AuxAnnotator("controlnet_aux.hed", "HEDdetector", ("ControlNetHED.pth",)),
    "softedge_pidinet": AuxAnnotator("controlnet_aux.pidi", "PidiNetDetector", ("table5_pidinet.pth",)),
    "normal": AuxAnnotator("controlnet_aux.normalbae", "NormalBaeDetector", ("scannet.pt",)),
    "mlsd": AuxAnnotator("controlnet_aux.mlsd", "MLSDdetector", ("mlsd_large_512_fp32.pth",)),
}
AUX["depth_midas"] = AUX["depth"]
AUX["softedge_hed"] = AUX["softedge"]
AUX["normal_bae"] = AUX["normal"]

# One detector per annotator kind and folder; loaded under the cache's lock so two chunks starting together load
# it once. The bound only matters for a worker that meets many annotator folders.
_detectors: LruCache[tuple[str, str], Any] = LruCache(2 * len(AUX), name="annotators")


def annotator_folder(models_dir: str | None) -> Path | None:
    """``$FRAMEFARM_ANNOTATORS``, else ``<models folder>/annotators`` when it exists."""
    explicit = os.environ.get(ANNOTATORS_ENV)
    if explicit:
        return Path(explicit).expanduser()
    from framefarm.renderers.models.library import annotator_folder as library_folder, models_root

    return library_folder(models_root(models_dir, required=False))


def _aux_detector(spec: AuxAnnotator, folder: Path | None):
    name = spec.cls
    if folder is None or not folder.is_dir():
        raise InputError("controlnet.preprocessor", name, "needs an annotator folder",
                         f"Set {ANNOTATORS_ENV}, or create <models folder>/annotators, holding {', '.join(spec.files)}")
    missing = [f for f in spec.files if not (folder / f).is_file()]
    if missing:
        raise InputError("controlnet.preprocessor", name, f"needs the file(s) {', '.join(missing)} in {folder}",
                         "Copy them from lllyasviel/Annotators (framefarm never downloads at render time)")
    return _detectors.get_or_load((spec.module + "." + spec.cls, str(folder)),
                                  lambda: _load_detector(spec, name, folder), load_under_lock=True)


def _load_detector(spec: AuxAnnotator, name: str, folder: Path):
    import importlib

    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise InputError("controlnet.preprocessor", name, f"needs controlnet-aux, which cannot be imported "
                                                          f"here ({exc})",
                         'Install the annotators extra: pip install "framefarm[annotators]" (with a torchvision '
                         "matching your torch)") from None
    try:
        return getattr(module, spec.cls).from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - third-party loaders raise anything; report it with the folder
        raise RenderError(f"{spec.cls} could not load its weights from {folder}: {exc}") from exc


# ---------------------------------------------------------------------------------------------------------------
# Registry


BUILTIN: dict[str, Callable[..., np.ndarray]] = {
    "none": none, "canny": canny, "shuffle": shuffle, "lineart_standard": lineart_standard, **AUX,
}
_ALIASES = {"lineart-standard": "lineart_standard", "content_shuffle": "shuffle", "identity": "none"}
# Pure functions of their arguments (numpy and OpenCV, which release the GIL while they work): safe to run for several
# frames at once on threads. The controlnet-aux annotators hold torch models and stay one frame at a time.
THREAD_SAFE = frozenset({"none", "canny", "shuffle", "lineart_standard"})


def available() -> dict[str, Callable[..., np.ndarray]]:
    """Every preprocessor by name: the built-ins, then the ``framefarm.preprocessors`` entry points."""
    return {**BUILTIN, **plugins()}


@functools.cache
def plugins() -> dict[str, Callable[..., np.ndarray]]:
    """The ``framefarm.preprocessors`` entry points besides framefarm's own registrations of its built-ins, loaded
    once per process: scanning the installed distributions takes ~5 ms, and a render looks a preprocessor up for
    every frame (32 lookups were 170 ms of a batch's control images). A plug-in installed while a worker runs is
    seen when the worker restarts."""
    found = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in BUILTIN and point.value.startswith("framefarm."):
            continue  # our own registration of a built-in
        try:
            found[point.name] = point.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not hide the others; say which one
            raise RenderError(f"preprocessor plug-in {point.name!r} ({point.value}) failed to load: {exc}") from exc
    return found


def canonical_name(name: str) -> str:
    """A preprocessor name as the registry spells it (case, spaces and aliases folded)."""
    return _ALIASES.get(name.strip().lower(), name.strip().lower())


def thread_safe(name: str) -> bool:
    """Whether ``name`` is one of the built-in preprocessors in ``THREAD_SAFE`` (not a plug-in registered under
    that name, whose code framefarm does not know)."""
    key = canonical_name(name)
    return key in THREAD_SAFE and available().get(key) is BUILTIN[key]


def get_preprocessor(name: str, *, field: str = "controlnet.preprocessor") -> Callable[..., np.ndarray]:
    key = canonical_name(name)
    table = available()
    if key not in table:
        raise InputError(field, name, "is not a preprocessor", f"Use one of: {', '.join(sorted(table))}")
    return table[key]


def preprocess(name: str, image: np.ndarray, *, seed: int, settings: PreprocessSettings,
               field: str = "controlnet.preprocessor") -> np.ndarray:
    """Run a preprocessor and check it kept the frame's size and format."""
    result = get_preprocessor(name, field=field)(image, seed=seed, settings=settings)
    if not isinstance(result, np.ndarray) or result.dtype != np.uint8 or result.shape != image.shape:
        raise RenderError(f"preprocessor {name!r} returned {getattr(result, 'dtype', type(result))} "
                          f"{getattr(result, 'shape', '')}, expected uint8 {image.shape}")
    return result
