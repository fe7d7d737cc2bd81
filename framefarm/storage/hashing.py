"""Content hashes: SHA-256 everywhere, so a hash in a manifest can be checked with ``sha256sum``."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a local file, streamed by ``hashlib.file_digest`` (model files are GBs; it never reads one whole)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
