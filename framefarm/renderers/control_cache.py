"""Stored ControlNet control images: a preprocessor runs once per unit and frame, a rerun or resume reads its PNG.

Layout, in the job's folder of the frame store::

    control/<unit hash>/<frame:06d>-<input hash>.png

* **unit hash** (16 hex digits): the preprocessor's identity (canonical name, where its code lives, its ``VERSION``;
  for a controlnet-aux annotator its module, class, options and the sizes of its weight files), the unit's
  thresholds and extra settings, and the OpenCV version (the weight-free preprocessors are OpenCV code). A unit whose
  preprocessor settings change gets a new folder; the old one is left for ``framefarm`` cleanup tools or ``rm``.
* **input hash** (16 hex digits): the SHA-256 of the image the preprocessor reads (shape and pixels, so the source
  frame's digest or the unit's fixed image) and the frame's seed (``shuffle`` draws its flow from it).

So a stored control image is used only when it is exactly what the preprocessor would compute now; anything else is
computed and stored again. Files are PNG (lossless: a reread control image equals the computed one bit for bit, so
frames are identical whether the preprocessor ran or not) and written atomically (``framefarm/storage/atomic.py``),
so a killed worker leaves a whole file or none. Two workers writing the same file write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from framefarm.renderers.preprocessors import (
    AuxAnnotator, PreprocessSettings, get_preprocessor, preprocess, thread_safe,
)

CONTROL_DIR = "control"
HASH_LENGTH = 16
# Threads making one batch's control images (weight-free preprocessors only); a render host has cores to spare.
PREPROCESS_THREADS = min(8, os.cpu_count() or 1)


def unit_hash(name: str, settings: PreprocessSettings, *, field: str = "controlnet.preprocessor") -> str:
    """The folder name for a preprocessor with these settings (see the module docstring)."""
    import cv2

    function = get_preprocessor(name, field=field)
    if isinstance(function, AuxAnnotator):
        identity: dict[str, Any] = {"module": function.module, "class": function.cls, "kwargs": function.kwargs,
                                    "version": function.VERSION, "files": _weight_sizes(function, settings.annotators)}
    else:
        identity = {"module": getattr(function, "__module__", type(function).__module__),
                    "name": getattr(function, "__qualname__", type(function).__qualname__),
                    "version": str(getattr(function, "VERSION", "1"))}
    payload = {"preprocessor": name.strip().lower(), "identity": identity, "threshold_a": settings.threshold_a,
               "threshold_b": settings.threshold_b, "extra": settings.extra, "opencv": cv2.__version__}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def input_hash(image: np.ndarray, seed: int) -> str:
    """Digest of what a preprocessor reads for one frame: the image (shape and pixels) and the frame's seed."""
    digest = hashlib.sha256(f"{image.shape}|{image.dtype}|{int(seed)}|".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()[:HASH_LENGTH]


def _weight_sizes(spec: AuxAnnotator, folder: Path | None) -> dict[str, int | None]:
    # Sizes, not contents: hashing gigabytes of annotator weights for every chunk would cost more than it saves, and
    # mtimes differ between workers that copied the same files. A replaced weight file of the same size is not
    # noticed: delete the job's control/ folder after swapping annotator weights.
    sizes: dict[str, int | None] = {}
    for name in spec.files:
        path = folder / name if folder is not None else None
        sizes[name] = path.stat().st_size if path is not None and path.is_file() else None
    return sizes


@dataclass(frozen=True)
class ControlStore:
    """Control images of one job in a :class:`~framefarm.storage.FrameStore` (any fsspec file system)."""

    store: Any  # FrameStore; typed loosely so this module needs no storage import at type-check time

    def path(self, unit: str, frame: int, digest: str) -> str:
        return self.store.path(CONTROL_DIR, unit, f"{frame:06d}-{digest}.png")

    def read(self, unit: str, frame: int, digest: str) -> np.ndarray | None:
        from framefarm.images import decode_png

        path = self.path(unit, frame, digest)
        try:
            data = self.store.fs.cat_file(path)
        except FileNotFoundError:
            return None
        return decode_png(data)

    def write(self, unit: str, frame: int, digest: str, image: np.ndarray) -> None:
        from framefarm.images import encode_png
        from framefarm.storage.atomic import atomic_write_bytes

        atomic_write_bytes(self.store.fs, self.path(unit, frame, digest), encode_png(image))


def control_images(store: ControlStore | None, name: str, inputs: list[tuple[int, np.ndarray, int]], *,
                   settings: PreprocessSettings, field: str = "controlnet.preprocessor") -> list[np.ndarray]:
    """The control images of one unit for ``inputs`` (``(frame, image the preprocessor reads, seed)`` each): read
    from ``store`` where stored, else preprocessed and stored. With no store (a renderer called outside the flow)
    the preprocessor simply runs. A weight-free preprocessor works on several frames at once: a batch's control
    images are made before its GPU work can start (at a chunk's first batch the GPU waits for them), and each frame's
    image depends on that frame alone, so the order of the work changes nothing."""
    unit = unit_hash(name, settings, field=field) if store is not None else None

    def one(item: tuple[int, np.ndarray, int]) -> np.ndarray:
        frame, image, seed = item
        if store is None:
            return preprocess(name, image, seed=seed, settings=settings, field=field)
        digest = input_hash(image, seed)
        stored = store.read(unit, frame, digest)
        if stored is None or stored.shape != image.shape:
            stored = preprocess(name, image, seed=seed, settings=settings, field=field)
            store.write(unit, frame, digest, stored)
        return stored

    threads = min(PREPROCESS_THREADS, len(inputs)) if thread_safe(name) else 1
    if threads <= 1:
        return [one(item) for item in inputs]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="control-images") as pool:
        return list(pool.map(one, inputs))
