"""The frame store: a job's frames and the manifest that says which of them are done.

Layout under the store root (a local folder or any fsspec URL such as ``s3://bucket/renders``)::

    <root>/<job>/frames/000000.png      the frames (written atomically)
    <root>/<job>/manifest/000000.json   one record per finished frame: frame key, seed, SHA-256, size
    <root>/<job>/manifest.json          the consolidated manifest, written when a render completes
    <root>/<job>/job.json, plan.json    the resolved job and its plan, so every frame can be reproduced

A frame counts as done only when its record exists and carries the frame key the plan expects: the record is
written after the PNG, so a write interrupted halfway leaves no record, and a stale PNG from an older plan is not
mistaken for a finished frame. One record per frame (rather than one shared file) lets any number of workers commit
frames at once, on a local disk or an object store, without locks.
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import fsspec
from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.local import LocalFileSystem

from framefarm.errors import InputError
from framefarm.storage.atomic import TEMP_MARKER, atomic_write_bytes
from framefarm.storage.hashing import sha256_bytes

FRAME_DIGITS = 6
MANIFEST_FORMAT = 1
# Asked for more records than this, the store lists the manifest folder once and reads only records that exist: on a
# fresh or half-done job most reads would miss, and on an object store every miss is a request.
LIST_FIRST_ABOVE = 512


@dataclass(frozen=True)
class FrameRecord:
    """What the manifest knows about one finished frame."""

    index: int
    key: str
    seed: int
    sha256: str
    path: str
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FrameStore:
    """Frames and manifest of one job under a store root.

    Args:
        root: a local folder or an fsspec URL (``s3://bucket/prefix``); storage options go to fsspec.
        job: the job name (validated to a safe folder name by the job spec; checked again here).
    """

    def __init__(self, root: str, job: str, **storage_options: Any) -> None:
        if not job or "/" in job or "\\" in job or job in {".", ".."}:
            raise InputError("job name", job, "cannot be used as a folder name", "Use letters, digits, . _ and -")
        self.root = str(root)
        self.job = job
        protocol = fsspec.core.split_protocol(self.root)[0] or "file"
        if issubclass(fsspec.get_filesystem_class(protocol), AsyncFileSystem):
            # No listings cache on object stores (s3fs, gcsfs, …): render processes and other workers commit frames
            # all the time, so a listing this process took is stale at once, and s3fs answers cat_file, info and
            # exists from a cached listing of the folder without asking the store. A listing of manifest/ taken
            # while a render ran in other processes (a progress bar) made the verify step miss the frames committed
            # since, and its repair delete their PNGs but keep their records (SECURITY.md, store restart). Every
            # read here is then asked of the store. An explicit ``use_listings_cache`` is kept.
            storage_options.setdefault("use_listings_cache", False)
        self.fs, base = fsspec.core.url_to_fs(self.root, **storage_options)
        self.job_dir = posixpath.join(base.rstrip("/") or "/", job) if base else job
        self.frames_dir = posixpath.join(self.job_dir, "frames")
        self.manifest_dir = posixpath.join(self.job_dir, "manifest")

    # ----- paths

    def frame_path(self, index: int) -> str:
        return posixpath.join(self.frames_dir, f"{index:0{FRAME_DIGITS}d}.png")

    def record_path(self, index: int) -> str:
        return posixpath.join(self.manifest_dir, f"{index:0{FRAME_DIGITS}d}.json")

    def path(self, *parts: str) -> str:
        """A path inside the job folder."""
        return posixpath.join(self.job_dir, *parts)

    def local_path(self, *parts: str) -> str | None:
        """The same path as an OS path when the store is a local folder, else ``None``."""
        if isinstance(self.fs, LocalFileSystem):
            return self.path(*parts)
        return None

    # ----- frames

    def commit_frame(self, index: int, png: bytes, *, key: str, seed: int, width: int, height: int) -> FrameRecord:
        """Store a frame and then its manifest record, each atomically. Returns the record."""
        path = self.frame_path(index)
        atomic_write_bytes(self.fs, path, png)
        record = FrameRecord(
            index=index, key=key, seed=int(seed), sha256=sha256_bytes(png), path=posixpath.relpath(path, self.job_dir),
            width=width, height=height,
        )
        atomic_write_bytes(self.fs, self.record_path(index), json.dumps(record.to_json(), sort_keys=True).encode())
        return record

    def remove_unfinished_writes(self) -> int:
        """Remove the temp files of frame and record writes that never finished; returns how many.

        A render process ended mid-write (a stop, a crash, a lost host) leaves its temp file beside the frames;
        readers skip it, but it would stay in the folder users copy. Only call this while holding the job's lock:
        the temp file of a write in progress elsewhere looks the same.
        """
        removed = 0
        for folder in (self.frames_dir, self.manifest_dir):
            self.fs.invalidate_cache(folder)
            try:
                names = self.fs.ls(folder, detail=False)
            except FileNotFoundError:
                continue
            for name in names:
                if TEMP_MARKER in posixpath.basename(name):
                    self.fs.rm(name, recursive=True)
                    removed += 1
        return removed

    def read_frame_bytes(self, index: int) -> bytes:
        return self.fs.cat_file(self.frame_path(index))

    def _record_paths(self) -> list[str]:
        # Object-store file systems cache listings; other workers commit frames all the time, so always re-list.
        self.fs.invalidate_cache(self.manifest_dir)
        try:
            names = self.fs.ls(self.manifest_dir, detail=False)
        except FileNotFoundError:
            return []
        return [n for n in names if n.endswith(".json") and TEMP_MARKER not in posixpath.basename(n)]

    def records(self) -> dict[int, FrameRecord]:
        """Every committed frame record, by frame number."""
        paths = self._record_paths()
        if not paths:
            return {}

        def read(path: str) -> FrameRecord | None:
            try:
                return FrameRecord(**json.loads(self.fs.cat_file(path)))
            except (FileNotFoundError, ValueError, TypeError):
                return None  # a record being replaced right now, or damaged: treated as not done

        found = [r for r in self._map(read, paths) if r is not None]
        return {record.index: record for record in found}

    def count_records(self) -> int:
        """How many frame records exist (cheap: a listing, no reads). For progress bars."""
        return len(self._record_paths())

    def read_records(self, indices: Iterable[int]) -> dict[int, FrameRecord]:
        """The records of just these frames (missing ones left out): a chunk reads its own, not the whole job's."""
        indices = list(indices)
        if len(indices) > LIST_FIRST_ABOVE:
            present = set()
            for path in self._record_paths():
                stem = posixpath.basename(path)[:-len(".json")]
                if stem.isdigit():
                    present.add(int(stem))
            indices = [i for i in indices if i in present]

        def read(index: int) -> FrameRecord | None:
            try:
                return FrameRecord(**json.loads(self.fs.cat_file(self.record_path(index))))
            except (FileNotFoundError, ValueError, TypeError):
                return None

        return {r.index: r for r in self._map(read, indices) if r is not None}

    def _map(self, function, items: list) -> list:
        # An object store answers many small reads faster in parallel (each is a round trip). A local disk answers
        # in microseconds, and there a thread hand-off per record cost more than the read (profiled: ~0.2 ms each).
        if len(items) <= 4 or isinstance(self.fs, LocalFileSystem):
            return [function(item) for item in items]
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(function, items))

    def done_frames(self, frame_keys: Mapping[int, str], records: Mapping[int, FrameRecord] | None = None) -> set[int]:
        """Frames whose record exists with the expected frame key: these need no rendering."""
        records = self.read_records(frame_keys) if records is None else records
        return {i for i, key in frame_keys.items() if (r := records.get(i)) is not None and r.key == key}

    def verify_frames(self, frame_keys: Mapping[int, str]) -> list[int]:
        """Frames that are missing, stale, or whose file no longer matches its recorded SHA-256."""
        records = self.read_records(frame_keys)
        bad = []
        for index, key in sorted(frame_keys.items()):
            record = records.get(index)
            if record is None or record.key != key:
                bad.append(index)
                continue
            try:
                if sha256_bytes(self.read_frame_bytes(index)) != record.sha256:
                    bad.append(index)
            except FileNotFoundError:
                bad.append(index)
        return bad

    # ----- job documents

    def write_json(self, name: str, document: Any) -> str:
        path = self.path(name)
        atomic_write_bytes(self.fs, path, json.dumps(document, indent=2, sort_keys=True).encode())
        return path

    def exists(self, name: str) -> bool:
        """Whether a file exists in the job folder (asked of the store, not of a cached listing)."""
        path = self.path(name)
        self.fs.invalidate_cache(posixpath.dirname(path))
        return self.fs.exists(path)

    def read_json(self, name: str) -> Any:
        return json.loads(self.fs.cat_file(self.path(name)))

    def write_manifest(self, frame_keys: Mapping[int, str], extra: Mapping[str, Any] | None = None) -> str:
        """Consolidate the per-frame records of the planned frames into ``manifest.json``."""
        records = self.records()
        frames = [records[i].to_json() for i in sorted(frame_keys) if i in records and records[i].key == frame_keys[i]]
        document = {"format": MANIFEST_FORMAT, "job": self.job, "frames": frames, **(extra or {})}
        return self.write_json("manifest.json", document)

    # ----- failures (for the error budget and the worker blocklist)

    def record_failure(self, worker: str, chunk: int, error: str) -> None:
        """Note that ``worker`` failed ``chunk``: one small file per failure, so workers never contend for a lock."""
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in worker)
        path = self.path("failures", safe, f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json")
        document = {"worker": worker, "chunk": chunk, "error": error[-2000:], "time": time.time()}
        atomic_write_bytes(self.fs, path, json.dumps(document, sort_keys=True).encode())

    def failure_count(self, worker: str) -> int:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in worker)
        folder = self.path("failures", safe)
        self.fs.invalidate_cache(folder)
        try:
            return sum(1 for n in self.fs.ls(folder, detail=False) if TEMP_MARKER not in posixpath.basename(n))
        except FileNotFoundError:
            return 0

    def remove_frames(self, indices: Iterable[int]) -> None:
        """Forget frames (record first, so a crash in between never leaves a record without its file)."""
        for index in indices:
            for path in (self.record_path(index), self.frame_path(index)):
                if self.fs.exists(path):
                    self.fs.rm(path)
