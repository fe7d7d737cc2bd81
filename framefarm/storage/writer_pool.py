"""Encode and commit frames on worker threads, so PNG encoding and storage writes overlap the next batch's denoising.

OpenCV's PNG encoder and zlib release the GIL, as do file and network writes, so a few threads keep up with a GPU
while the render thread goes straight back to launching the next batch. The number of frames in flight is bounded
(``max_pending``): a slow store slows the render down instead of piling frames up in memory. Leaving the ``with``
block waits for every submitted frame, also when the render failed, so a crash still keeps every frame that was
handed over — the at-most-the-frames-in-hand promise of ``render_chunk`` becomes at most ``max_pending`` frames.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

DEFAULT_THREADS = 4


class FrameWriterPool:
    """``submit(frame, image, **record)`` → ``encode(image)`` and ``store.commit_frame(frame, png, **record)``.

    Args:
        store: a :class:`framefarm.storage.FrameStore` (anything with its ``commit_frame``).
        encode: image → bytes (``framefarm.images.encode_png``; storage itself stays free of image libraries).
        threads: writer threads.
        max_pending: frames submitted but not yet committed before ``submit`` blocks (default ``4 × threads``).
    """

    def __init__(self, store: Any, encode: Callable[[Any], bytes], *, threads: int = DEFAULT_THREADS,
                 max_pending: int | None = None) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self._store = store
        self._encode = encode
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="frame-writer")
        self._slots = threading.BoundedSemaphore(max_pending or 4 * threads)
        self._futures: list[tuple[int, Future]] = []

    def submit(self, frame: int, image: Any, **record: Any) -> None:
        self._slots.acquire()
        try:
            future = self._pool.submit(self._write, frame, image, record)
        except BaseException:
            self._slots.release()
            raise
        self._futures.append((frame, future))

    def _write(self, frame: int, image: Any, record: dict[str, Any]) -> None:
        try:
            self._store.commit_frame(frame, self._encode(image), **record)
        finally:
            self._slots.release()

    def close(self) -> list[int]:
        """Wait for every submitted frame; the committed frame numbers in submission order (first error raised)."""
        self._pool.shutdown(wait=True)
        for _, future in self._futures:
            future.result()
        return [frame for frame, _ in self._futures]

    def __enter__(self) -> FrameWriterPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._pool.shutdown(wait=True)  # keep what was handed over; the render's error is the one that counts
