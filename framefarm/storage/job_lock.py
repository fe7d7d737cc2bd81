"""One render per job folder at a time: a lock file in the store, ``<job>/render.lock``.

Two renders of one job into one store overwrite each other's half-written video and race on the manifest, so a
render holds this lock for its whole run. It works where the frames live — a local folder or an S3-compatible
bucket — so renders on different machines sharing a store exclude each other too.

Atomic steps, by store:

* local folder: create with ``O_CREAT | O_EXCL``; compare-and-replace under ``flock`` on a hidden guard file beside it;
* S3: create with ``If-None-Match: *``; compare-and-replace with ``If-Match: <ETag>`` (conditional writes, which
  AWS S3, SeaweedFS, MinIO and Ceph implement);
* other fsspec stores: read-compare-write, which is not atomic (two renders starting in the same second may both
  win); framefarm only supports the two above for farms.

A lock records its holder: host, pid, the pid's start time, a heartbeat the holder refreshes every
``ttl / HEARTBEATS_PER_TTL`` seconds, and the command. It is *stale*, and the next render takes it over, when its
process is gone (same host and pid namespace: the pid is dead, or is another process now), or, from another host or
container, when its heartbeat is older than ``ttl`` (hosts of a farm keep their clocks in step, NTP). Taking over is a compare-and-replace of
exactly the stale lock that was read, so of several renders that find the same stale lock only one wins.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from framefarm.errors import InputError
from framefarm.storage.atomic import atomic_path

LOCK_NAME = "render.lock"
DEFAULT_TTL_S = 120.0
HEARTBEATS_PER_TTL = 6
WAIT_POLL_S = 2.0


@dataclass(frozen=True)
class LockHolder:
    """Who holds a job's lock, as written in the lock file."""

    token: str
    host: str
    pid: int
    pid_started: float | None
    command: str
    started: float
    heartbeat: float
    ttl: float
    pid_namespace: str | None = None  # containers on one host may share a host name, never a pid namespace

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host} since {since} ({self.command})"


class JobLocked(InputError):
    """Another render holds the job's lock."""

    def __init__(self, store_dir: str, holder: LockHolder) -> None:
        super().__init__(
            "--out", store_dir, f"is being rendered by {holder.describe()}",
            "Wait for it to finish, run again with --wait to queue behind it, or render into another --out")
        self.holder = holder


def _process_start_time(pid: int) -> float | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid from the holder."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return float(fields[19])  # field 22 of stat; fields[0] here is field 3
    except (OSError, IndexError, ValueError):
        return None


def _pid_namespace() -> str | None:
    """This process's pid namespace (Linux): a pid means the same process only inside one namespace."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def is_stale(holder: LockHolder, now: float | None = None) -> bool:
    """Whether ``holder`` no longer renders (see the module docstring)."""
    if holder.host == socket.gethostname() and holder.pid_namespace == _pid_namespace():
        if not _pid_alive(holder.pid):
            return True
        started = _process_start_time(holder.pid)
        return holder.pid_started is not None and started is not None and started != holder.pid_started
    return (now if now is not None else time.time()) - holder.heartbeat > holder.ttl


# ----- the store's atomic operations: a version is what a compare-and-replace compares against


class _LockFile:
    def __init__(self, fs, path: str) -> None:
        self.fs, self.path = fs, path

    def read(self) -> tuple[bytes, Any] | None:
        with contextlib.suppress(FileNotFoundError):
            data = self.fs.cat_file(self.path)
            return data, data
        return None

    def create(self, data: bytes) -> Any | None:
        if self.fs.exists(self.path):
            return None
        self.fs.pipe_file(self.path, data)
        return data

    def replace(self, data: bytes, version: Any) -> Any | None:
        current = self.read()
        if current is None or current[1] != version:
            return None
        self.fs.pipe_file(self.path, data)
        return data

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path)


class _LocalLockFile(_LockFile):
    def create(self, data: bytes) -> Any | None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        # Written before anyone can read it as a whole: readers of a half-written lock treat it as busy (see read).
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return data

    def replace(self, data: bytes, version: Any) -> Any | None:
        import fcntl

        # The guard file is never removed, so every contender locks the same inode (hidden: it is not output).
        guard_path = os.path.join(os.path.dirname(self.path), f".{os.path.basename(self.path)}.guard")
        with open(guard_path, "a+b") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            current = self.read()
            if current is None or current[1] != version:
                return None
            with atomic_path(self.path) as temp:
                temp.write_bytes(data)
            return data


class _S3LockFile(_LockFile):
    def read(self) -> tuple[bytes, Any] | None:
        with contextlib.suppress(FileNotFoundError):
            etag = self.fs.info(self.path, refresh=True)["ETag"]
            data = self.fs.cat_file(self.path)
            return data, etag  # a write between the two calls makes the next conditional write fail: safe
        return None

    def _put(self, data: bytes, **condition: Any) -> Any | None:
        try:
            response = self.fs.pipe_file(self.path, data, **condition)
        except OSError as exc:
            if "pre-condition" in str(exc).lower() or "precondition" in str(exc).lower():
                return None
            raise
        etag = response.get("ETag") if isinstance(response, dict) else None
        return etag or self.fs.info(self.path, refresh=True)["ETag"]

    def create(self, data: bytes) -> Any | None:
        return self._put(data, mode="create")

    def replace(self, data: bytes, version: Any) -> Any | None:
        return self._put(data, IfMatch=version)


def _lock_file(fs, path: str) -> _LockFile:
    if isinstance(fs, LocalFileSystem):
        return _LocalLockFile(fs, path)
    if "s3" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return _S3LockFile(fs, path)
    return _LockFile(fs, path)


# ----- the lock


class JobLock:
    """The render lock of one job folder. Use as a context manager around the render, after :meth:`acquire`.

    Args:
        store: the job's :class:`~framefarm.storage.FrameStore`.
        command: what holds it, for the message another render prints (``framefarm render job.toml``).
        ttl: seconds without a heartbeat after which another host may take the lock over.
    """

    def __init__(self, store, command: str, ttl: float = DEFAULT_TTL_S) -> None:
        self.store = store
        self.file = _lock_file(store.fs, store.path(LOCK_NAME))
        self.command = command
        self.ttl = ttl
        self.token = uuid.uuid4().hex
        self.lost: str | None = None  # why the lock was lost while held (taken over), else None
        self.took_over: LockHolder | None = None  # the stale holder this lock replaced, if any
        self._version: Any = None
        self._pid_started = _process_start_time(os.getpid())
        self._started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write = threading.Lock()

    def _document(self, started: float) -> bytes:
        holder = LockHolder(token=self.token, host=socket.gethostname(), pid=os.getpid(),
                            pid_started=self._pid_started, command=self.command, started=started,
                            heartbeat=time.time(), ttl=self.ttl, pid_namespace=_pid_namespace())
        return json.dumps(asdict(holder), sort_keys=True).encode()

    def holder(self) -> tuple[LockHolder | None, Any]:
        """The current holder and the lock's version; ``(None, None)`` when unlocked. A lock file that cannot be
        read as a whole (being written this instant) counts as held by an unknown live holder."""
        found = self.file.read()
        if found is None:
            return None, None
        data, version = found
        try:
            return LockHolder(**json.loads(data)), version
        except (ValueError, TypeError):
            # Being written this instant, or left half-written by a holder that died while writing it: the file's
            # own age is its heartbeat, so it goes stale after ``ttl``.
            try:
                written = self.store.fs.modified(self.file.path).timestamp()
            except (OSError, NotImplementedError):
                written = time.time()
            return LockHolder(token="", host="?", pid=-1, pid_started=None, command="unknown", started=written,
                              heartbeat=written, ttl=self.ttl), version

    def try_acquire(self) -> LockHolder | None:
        """Take the lock if it is free or stale. Returns ``None`` when taken, else the live holder."""
        self._started = time.time()
        version = self.file.create(self._document(self._started))
        if version is not None:
            self._version = version
            return None
        holder, seen = self.holder()
        if holder is None:  # released between our create and our read: try again
            return self.try_acquire()
        if is_stale(holder):
            version = self.file.replace(self._document(self._started), seen)
            if version is not None:
                self._version = version
                self.took_over = holder
                return None
            holder, _ = self.holder()  # another render took it over first
            return holder or self.try_acquire()
        return holder

    def acquire(self, wait: bool = False, on_wait: Callable[[LockHolder], None] | None = None) -> None:
        """Take the lock, or raise :class:`JobLocked`; with ``wait`` poll until it is free (``on_wait`` is told
        whom we wait for, once per holder)."""
        told = None
        while True:
            holder = self.try_acquire()
            if holder is None:
                break
            if not wait:
                where = self.store.local_path() or self.store.fs.unstrip_protocol(self.store.job_dir)
                raise JobLocked(where, holder)
            if on_wait is not None and holder.token != told:
                on_wait(holder)
                told = holder.token
            time.sleep(WAIT_POLL_S)
        self._thread = threading.Thread(target=self._beat, name="framefarm-job-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / HEARTBEATS_PER_TTL):
            with self._write:
                if self._stop.is_set():
                    return
                try:
                    version = self.file.replace(self._document(self._started), self._version)
                except OSError:
                    continue  # the store is unreachable for a moment: the next beat tries again
                if version is None:
                    holder, _ = self.holder()
                    self.lost = f"taken over by {holder.describe()}" if holder else "removed by someone else"
                    return
                self._version = version

    def release(self) -> None:
        """Stop the heartbeat and remove the lock, if it is still ours."""
        self._stop.set()
        with self._write:
            if self.lost is None and self._version is not None:
                holder, _ = self.holder()
                if holder is not None and holder.token == self.token:
                    self.file.delete()
            self._version = None

    def __enter__(self) -> JobLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
