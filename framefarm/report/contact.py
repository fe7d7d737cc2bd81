"""The contact sheet: evenly spaced finished frames as small JPEGs inlined in the page (``data:`` URLs), so the
report is one self-contained file that opens anywhere, even after the frames are deleted."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from framefarm.storage import FrameStore

THUMBS = 24
THUMB_WIDTH = 192
LATEST_WIDTH = 384
JPEG_QUALITY = 82  # thumbnails: ~4–8 kB each at 192 px


@dataclass(frozen=True)
class Thumb:
    """One frame of the sheet: its number and a ``data:image/jpeg;base64,…`` URL of its thumbnail."""

    index: int
    data_url: str
    width: int
    height: int


def pick_frames(done: Sequence[int], count: int = THUMBS) -> list[int]:
    """``count`` frames spread evenly over the finished ones, the first and the last included."""
    done = sorted(done)
    if len(done) <= count:
        return list(done)
    positions = np.linspace(0, len(done) - 1, count).round().astype(int)
    return sorted({done[p] for p in positions.tolist()})


def thumbnail(png: bytes, width: int) -> tuple[str, int, int] | None:
    """PNG bytes → (JPEG data URL, width, height), ``width`` pixels wide (never upscaled); ``None`` if unreadable."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)  # BGR in, BGR out: no conversion needed
    if image is None:
        return None
    h, w = image.shape[:2]
    if w > width:
        h, w = max(1, round(h * width / w)), width
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii"), w, h


def thumbnails(store: FrameStore, frames: Sequence[int], width: int = THUMB_WIDTH) -> list[Thumb]:
    """Thumbnails of ``frames`` (frames that can't be read right now are left out)."""

    def make(index: int) -> Thumb | None:
        try:
            made = thumbnail(store.read_frame_bytes(index), width)
        except (FileNotFoundError, OSError):
            return None
        return None if made is None else Thumb(index, *made)

    # Reads overlap well on an object store; decoding releases the GIL in OpenCV.
    with ThreadPoolExecutor(max_workers=4) as pool:
        return [t for t in pool.map(make, frames) if t is not None]
