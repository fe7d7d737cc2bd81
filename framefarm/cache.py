"""One small process-wide cache: least recently used entries go first once it holds ``maxsize``, one lock inside.

Used for what a worker process loads from model files and keeps between chunks (embeddings, LoRA layers,
hypernetworks, depth models, ControlNet annotators, AnimateDiff motion adapters). Every one of them is bounded: a
long-lived GPU worker renders job after job, each naming other files, and an unbounded cache grows until the
process runs out of memory.

Why not ``functools.lru_cache``: these caches are keyed by the *content* of a file (its SHA-256, with the base model
a LoRA is matched to), not by the call's arguments: a library entry renamed or copied must hit the cache, and the
arguments (a loaded base model, an ``allow_pickle`` flag that decides only whether loading is allowed) must not be
part of the key or be kept alive by it. ``lru_cache`` also offers no way to load under the lock, which a multi-GB
model needs so that two threads don't load it twice at once.

Stdlib only, so every package of framefarm may import it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A thread-safe mapping of at most ``maxsize`` entries; a hit makes an entry the most recently used.

    Args:
        maxsize (`int`): entries kept; adding one more drops the least recently used. At least 1.
        name (`str`, *optional*): what it holds, for ``repr`` and error messages.
    """

    def __init__(self, maxsize: int, *, name: str = "cache") -> None:
        if maxsize < 1:
            raise ValueError(f"{name}: maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.name = name
        self._entries: OrderedDict[K, V] = OrderedDict()
        # Re-entrant: a loader run under the lock may itself read this cache.
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"LruCache({self.name!r}, {len(self)}/{self.maxsize})"

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def put(self, key: K, value: V) -> V:
        """Store ``value`` under ``key`` as the most recently used entry; returns ``value``."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return value

    def get_or_load(self, key: K, load: Callable[[], V], *, load_under_lock: bool = False) -> V:
        """The entry for ``key``, or ``load()``'s result, stored. An exception from ``load`` stores nothing.

        Args:
            key: the cache key.
            load: makes the value on a miss.
            load_under_lock (`bool`, *optional*, defaults to False): hold the cache's lock while loading, so
                concurrent callers wait for one load instead of each loading (for large models). Off, a slow load
                never blocks other keys' hits; two threads missing the same key at once both load, the later one's
                value is kept.
        """
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            if load_under_lock:
                return self.put(key, load())
        return self.put(key, load())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
