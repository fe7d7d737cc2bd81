"""Model hashes: the full SHA-256 of a weights file (it enters frame keys) and A1111's 10-character short hash.

The short hash is A1111's "AutoV2" (the first 10 hex digits of the file's SHA-256), the one Civitai and A1111
show, so a user can match a listed file to its download page. A diffusers folder's hash is the SHA-256 of its
weight and config files' names and hashes, in name order.

Hashing a 7 GB SDXL checkpoint takes ~10 s, so hashes are cached by (path, size, modification time) in memory and
in ``$FRAMEFARM_CACHE_DIR/model-hashes.json`` (default ``~/.cache/framefarm``), like A1111's ``cache.json``.
A file changed in place gets a new size or mtime, so a stale hash is never served.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from framefarm.storage.atomic import atomic_write_text
from framefarm.storage.hashing import file_digest

SHORT_HASH_LENGTH = 10
_CACHE_NAME = "model-hashes.json"
_lock = threading.Lock()
_memory: dict[str, dict[str, object]] = {}
_loaded_from: str | None = None

# Files of a diffusers folder that decide its pixels (weights and configs); READMEs and images do not.
_FOLDER_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model", ".ckpt", ".pt", ".pth")


def cache_dir() -> Path:
    explicit = os.environ.get("FRAMEFARM_CACHE_DIR")
    return Path(explicit) if explicit else Path.home() / ".cache" / "framefarm"


def _cache_file() -> Path:
    return cache_dir() / _CACHE_NAME


def _load_disk_cache() -> None:
    global _loaded_from
    where = str(_cache_file())
    if _loaded_from == where:
        return
    _loaded_from = where
    _memory.clear()
    try:
        data = json.loads(Path(where).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            _memory.update({k: v for k, v in data.items() if isinstance(v, dict)})
    except (OSError, ValueError):
        pass  # no cache yet, or a damaged one: hashes are recomputed


def _save_disk_cache() -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not fsynced: a cache lost in a crash is recomputed. The pid in the temp name keeps two processes apart.
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        atomic_write_text(path, json.dumps(_memory, sort_keys=True), temp=temp)
    except OSError:
        pass  # a read-only home is fine: the memory cache still serves this process


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def sha256_of(path: str | Path) -> str:
    """Full SHA-256 of a weights file or diffusers folder, cached by (path, size, mtime)."""
    path = Path(path).resolve()
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _FOLDER_SUFFIXES):
            digest.update(f"{child.relative_to(path).as_posix()}\0{sha256_of(child)}\n".encode())
        return digest.hexdigest()
    key = str(path)
    with _lock:
        _load_disk_cache()
        entry = _memory.get(key)
        stamp = _stamp(path)
        if entry and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str):
            return str(entry["sha256"])
    value = file_digest(path)  # outside the lock: hashing GBs must not block other threads' cache hits
    with _lock:
        _memory[key] = {"stamp": stamp, "sha256": value}
        _save_disk_cache()
    return value


def short_hash(path: str | Path) -> str:
    """A1111's short hash ("AutoV2"): the first 10 hex digits of the SHA-256."""
    return sha256_of(path)[:SHORT_HASH_LENGTH]
