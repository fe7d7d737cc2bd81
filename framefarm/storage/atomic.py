"""Atomic writes: a reader sees the old file or the whole new one, never half of it.

Local files: write a temp file in the same folder, fsync, ``os.replace`` (atomic on POSIX within one file system).
Object stores (S3 and friends): a PUT is already all-or-nothing, so the object is written directly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import BinaryIO

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

TEMP_MARKER = ".tmp-"


def atomic_write(fs: AbstractFileSystem, path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(handle)`` so the file appears complete or not at all.

    If ``write`` raises (or the process dies) the target is untouched; a local temp file is removed on error
    (a killed process can leave one behind: names contain :data:`TEMP_MARKER` and are ignored by readers).
    """
    if not isinstance(fs, LocalFileSystem):
        with fs.open(path, "wb") as handle:
            write(handle)
        return
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, f"{TEMP_MARKER}{uuid.uuid4().hex}-{os.path.basename(path)}")
    try:
        with open(temp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def atomic_write_bytes(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    atomic_write(fs, path, lambda handle: handle.write(data))
