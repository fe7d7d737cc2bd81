"""Atomic writes: a reader sees the old file or the whole new one, never half of it.

Local files: write a temp file in the same folder, then ``os.replace`` it onto the real name (atomic on POSIX within
one file system). Object stores (S3 and friends): a PUT is already all-or-nothing, so the object is written directly.

Every temp-then-rename in framefarm goes through this module. Callers differ only in what they need, so those are
parameters rather than copies: the temp name (a reader that globs ``*.json`` must not pick up a temp file, and ffmpeg
picks the container from the temp name's suffix), whether the data is fsynced before the rename (frames and records
are; a cache file that is recomputed when lost is not), and whether the target is a folder (an image sequence).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

TEMP_MARKER = ".tmp-"


def temp_path(path: str | Path) -> Path:
    """A unique temp name beside ``path``; it contains :data:`TEMP_MARKER`, which readers of stores skip."""
    path = Path(path)
    return path.with_name(f"{TEMP_MARKER}{uuid.uuid4().hex}-{path.name}")


def publish(temp: str | Path, path: str | Path) -> Path:
    """Move a finished ``temp`` (a file or a folder) onto ``path``.

    A file replaces the old one in one rename. A folder cannot be renamed over a non-empty folder, so the old one is
    moved aside first and removed after: a reader sees the old folder or the new one, and for a moment neither.
    """
    temp, path = Path(temp), Path(path)
    if temp.is_dir():
        old = None
        if path.exists():
            old = path.with_name(path.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(temp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temp, path)
    return path


def discard(temp: str | Path) -> None:
    """Remove an unfinished temp file or folder; a missing one is fine."""
    temp = Path(temp)
    if temp.is_dir():
        shutil.rmtree(temp, ignore_errors=True)
    else:
        temp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, temp: str | Path | None = None) -> Iterator[Path]:
    """Yield a temp path to write; on success it is published onto ``path``, on any error it is removed.

    ``temp`` defaults to :func:`temp_path`; pass one where a reader or a tool cares about the name. The folder of
    ``path`` must exist. To fsync, do it on the handle inside the block (see :func:`atomic_write`).
    """
    temp = temp_path(path) if temp is None else Path(temp)
    try:
        yield temp
        publish(temp, path)
    except BaseException:
        discard(temp)
        raise


def atomic_write(fs: AbstractFileSystem, path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(handle)`` so the file appears complete or not at all.

    Local files are fsynced before the rename, so a power cut after a frame is recorded cannot leave an empty file.
    If ``write`` raises (or the process dies) the target is untouched; a local temp file is removed on error
    (a killed process can leave one behind: names contain :data:`TEMP_MARKER` and are ignored by readers).
    """
    if not isinstance(fs, LocalFileSystem):
        with fs.open(path, "wb") as handle:
            write(handle)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    atomic_write(fs, path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str, *, temp: str | Path | None = None) -> None:
    """Write a small local text file (UTF-8) whole or not at all, without fsync: for state that can be rebuilt."""
    with atomic_path(path, temp=temp) as target:
        target.write_text(text, encoding="utf-8")
