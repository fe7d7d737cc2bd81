"""Frame sources for the finishing stage: any folder of images, or frames the caller reads on demand.

A source is a :class:`FrameSequence`: a length and a way to read frame ``i``. Knowing the count before encoding lets
the finishing stage check BPM-exact lengths and name the output before any work; reading on demand keeps memory flat
(600 1080p frames are 3.7 GB as arrays).

Folders are read in *natural* order (``f2.png`` before ``f10.png``), so folders written by other tools without zero
padding come out right; 16-bit images are reduced to 8 bits, greyscale becomes RGB, alpha is kept when asked for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from framefarm.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".exr"})
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``frame2`` < ``frame10``."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(name))


def list_frame_files(folder: str | Path, *, field: str = "FRAMES_DIR") -> list[Path]:
    """The image files of ``folder`` in natural order; an :class:`InputError` when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(field, str(folder), "is not a folder", "Give a folder of numbered images (PNG, JPEG …)")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise InputError(field, str(folder), "holds no image files",
                         f"Put frames with one of the suffixes {', '.join(sorted(IMAGE_SUFFIXES))} in it")
    return files


def to_rgb8(image: np.ndarray, *, alpha: bool) -> np.ndarray:
    """An image as OpenCV read it (BGR/BGRA/grey, 8 or 16 bit) → RGB (or RGBA when ``alpha``) uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:  # float EXR/TIFF: 0..1 scene values, clipped
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if alpha else cv2.COLOR_BGRA2RGB)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if alpha:
        return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    return rgb


def read_frame_file(path: Path, *, alpha: bool = False) -> np.ndarray:
    """Read one frame file as RGB(A) uint8; an :class:`InputError` naming the file when it is not an image."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError("frame", str(path), "is not an image OpenCV can read", "Use PNG, JPEG, WebP or TIFF")
    return to_rgb8(image, alpha=alpha)


def has_alpha_channel(path: Path) -> bool:
    """Whether an image file has an alpha channel (reads the file once)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return image is not None and image.ndim == 3 and image.shape[2] == 4


class FrameSequence(Sequence):
    """``length`` frames read on demand by ``read(i)`` (RGB or RGBA uint8 arrays, all the same size)."""

    def __init__(self, length: int, read: Callable[[int], np.ndarray], name: str = "frames") -> None:
        self.length, self.read, self.name = length, read, name

    def __repr__(self) -> str:
        return f"FrameSequence({self.name!r}, {self.length} frames)"

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self.read(i) for i in range(*index.indices(self.length))]
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.read(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(self.length):
            yield self.read(index)


def frame_folder(folder: str | Path, *, alpha: bool = False, field: str = "FRAMES_DIR") -> FrameSequence:
    """A folder of images as a :class:`FrameSequence`, in natural name order.

    Every frame must have the first frame's size: a frame that differs raises an :class:`InputError` naming it.
    """
    files = list_frame_files(folder, field=field)
    first = read_frame_file(files[0], alpha=alpha)
    size = first.shape[:2]

    def read(index: int) -> np.ndarray:
        frame = first if index == 0 else read_frame_file(files[index], alpha=alpha)
        if frame.shape[:2] != size:
            raise InputError("frame", str(files[index]),
                             f"is {frame.shape[1]}x{frame.shape[0]} but the first frame ({files[0].name}) is "
                             f"{size[1]}x{size[0]}", "Give a folder whose frames all have one size")
        return frame

    return FrameSequence(len(files), read, name=Path(folder).name)
