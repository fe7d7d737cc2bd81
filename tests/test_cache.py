"""The process-wide LRU cache the model loaders share: bounded, least recently used first out, one load per miss."""

from __future__ import annotations

import threading
import time

import pytest

from framefarm.cache import LruCache


def test_least_recently_used_entry_goes_first():
    cache: LruCache[str, int] = LruCache(2, name="test")
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get_or_load("a", lambda: pytest.fail("a is cached")) == 1  # a is now the most recent
    cache.put("c", 3)
    assert "a" in cache and "c" in cache and "b" not in cache and len(cache) == 2


def test_a_failed_load_stores_nothing():
    cache: LruCache[str, int] = LruCache(1)

    def broken() -> int:
        raise OSError("damaged file")

    with pytest.raises(OSError, match="damaged"):
        cache.get_or_load("x", broken)
    assert "x" not in cache
    assert cache.get_or_load("x", lambda: 7) == 7


def test_load_under_lock_loads_once_for_concurrent_callers():
    cache: LruCache[str, object] = LruCache(2)
    loads = []

    def load() -> object:
        loads.append(1)
        time.sleep(0.05)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_load("m", load, load_under_lock=True)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len({id(r) for r in results}) == 1


def test_maxsize_must_be_positive():
    with pytest.raises(ValueError, match="maxsize must be at least 1, got 0"):
        LruCache(0, name="test")
