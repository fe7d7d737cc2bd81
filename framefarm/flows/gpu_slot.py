"""The GPU of a chunk worker process: one chunk renders on it at a time, and it knows how far that chunk has got.

A chunk worker with look-ahead (``framefarm chunk-worker --lookahead-s``) holds up to two chunks: the one rendering
and the next, taken from Prefect's queue while the first still renders so that the hand-out (a round trip through
the Prefect server) overlaps GPU work instead of idling the GPU. The second chunk runs in a thread of its own (the
task worker's pool) and waits here until the GPU is free. The worker's loop asks :meth:`GpuSlot.may_take_next`
before it subscribes, which says yes only when nothing already waits and the chunk on the GPU has at most
``lookahead_s`` left, estimated from its own frames so far (or, before its first frame, from the previous chunk's
rate). That bounds how long a chunk sits on a busy worker, so job priorities and the spread over idle workers
still hold.

Kept free of Prefect: the task's thread and the worker's event loop both use it, through the one instance ``GPU``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from framefarm.errors import RenderStopped

# A chunk worker takes its next chunk when the current one has this long left: well above a hand-out on a loaded
# server (p95 4.5 s measured at 24 GPUs on a starved 2-core box), and short next to the minute-long chunks the
# capacity plan asks for, so a taken chunk waits at most about this long for its GPU while another worker might
# have been free to render it.
DEFAULT_LOOKAHEAD_S = 15.0
WAIT_POLL_S = 0.2  # how often a waiting chunk looks whether the worker is stopping


class GpuWaitStopped(RenderStopped):
    """The worker is stopping: a chunk that was waiting for the GPU gives it back instead of rendering."""


class GpuSlot:
    """One chunk at a time on the GPU; progress of the chunk on it; chunks taken and not yet on it."""

    def __init__(self) -> None:
        self._gpu = threading.Lock()
        self._mutex = threading.Lock()
        self._waiting: set[Hashable] = set()  # taken from the queue, not yet on the GPU (or gone without it)
        self._frames = 0  # frames of the chunk on the GPU (0: the GPU is free)
        self._done = 0
        self._started = 0.0
        self._last_frame = 0.0
        self._rate: float | None = None  # seconds per frame of the last chunk that rendered a frame
        self.stopping = threading.Event()

    # ----- the worker's loop

    def taken(self, run: Hashable) -> None:
        """A chunk was taken from the queue: it counts as waiting until it reaches the GPU or ends."""
        with self._mutex:
            self._waiting.add(run)

    def settled(self, run: Hashable) -> None:
        """The run ended (whether or not it reached the GPU): it no longer waits."""
        with self._mutex:
            self._waiting.discard(run)

    def remaining_s(self) -> float | None:
        """Estimated seconds left of the chunk on the GPU (``None``: the GPU is free)."""
        with self._mutex:
            return self._remaining(time.monotonic())

    def _remaining(self, now: float) -> float | None:
        if not self._frames:
            return None
        if self._done:
            rate = (self._last_frame - self._started) / self._done
        elif self._rate is not None:
            rate = self._rate
        else:
            return 0.0  # nothing to go by (the worker's first chunk, before its first frame): ask at once
        return max(0.0, self._frames * rate - (now - self._started))

    def may_take_next(self, lookahead_s: float) -> bool:
        """Whether the worker may take another chunk now: nothing is waiting for the GPU, and the GPU is free or
        its chunk is estimated to end within ``lookahead_s`` (0: only a free GPU)."""
        with self._mutex:
            if self._waiting:
                return False
            remaining = self._remaining(time.monotonic())
            return remaining is None or (lookahead_s > 0 and remaining <= lookahead_s)

    # ----- the task's thread

    @contextmanager
    def hold(self, frames: int, run: Hashable | None = None) -> Iterator[GpuSlot]:
        """Wait for the GPU, then hold it for a chunk of ``frames`` frames. Raises :class:`GpuWaitStopped`
        instead of waiting on when the worker stops (``stopping``), so a waiting chunk is given back, not run."""
        try:
            while not self._gpu.acquire(timeout=WAIT_POLL_S):
                if self.stopping.is_set():
                    raise GpuWaitStopped("the worker is stopping: a chunk that waited for the GPU was given back")
            if self.stopping.is_set():
                self._gpu.release()
                raise GpuWaitStopped("the worker is stopping: a chunk that waited for the GPU was given back")
        except BaseException:
            self.settled(run)
            raise
        with self._mutex:  # on the GPU and no longer waiting in one step, so the worker's loop never sees neither
            self._waiting.discard(run)
            self._frames, self._done = max(int(frames), 1), 0
            self._started = self._last_frame = time.monotonic()
        try:
            yield self
        finally:
            with self._mutex:
                if self._done:
                    self._rate = (self._last_frame - self._started) / self._done
                self._frames = self._done = 0
            self._gpu.release()

    def frame(self, _frame: int | None = None) -> None:
        """One more frame of the chunk on the GPU is done (the render's per-frame heartbeat)."""
        with self._mutex:
            if self._frames:
                self._done += 1
                self._last_frame = time.monotonic()


GPU = GpuSlot()
