"""Render processes: a chunk's GPU work runs in a child process that a watchdog kills when it stops making progress.

Why a process: a thread cannot be stopped. Prefect's ``timeout_seconds`` marks a hung task failed but leaves its
thread running (and holding the GPU); a stuck CUDA call or a deadlocked renderer never returns. A process can be
killed, and the kernel gives back its GPU memory.

How it works:

* a render process is ``python -m framefarm.flows.render_process`` with two pipes; it imports framefarm (not
  Prefect), takes one chunk at a time, commits each frame to the store itself and sends a heartbeat per frame;
* the task's thread waits on the pipe. No message for ``farm.chunk_timeout`` seconds means no frame committed for
  that long: the process is SIGKILLed and :class:`ChunkHung` raised, which the task records against the worker (the
  blocklist counts it) and Prefect retries. Frames committed before the hang stay done;
* processes are kept and reused (a loaded model stays loaded across chunks and flow runs in the same parent), one
  pool per backend and environment, so a process never renders with another job's ``CUDA_VISIBLE_DEVICES``;
* a render process exits when its parent does (EOF on its pipe, or a parent-pid watch while it renders).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import pickle
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from framefarm.errors import InputError, RenderError

# How often a render process checks that its parent is still alive while it renders (between chunks a dead parent
# is seen at once, as EOF on the pipe).
PARENT_CHECK_S = 2.0
# A new render process says "ready" once it has imported framefarm; only then does the chunk's clock start, so a
# slow interpreter start on a busy machine is not mistaken for a hung renderer.
START_TIMEOUT_S = 120.0


class ChunkHung(RenderError):
    """No frame of a chunk was committed for ``farm.chunk_timeout`` seconds: its render process was killed."""


class RenderProcessDied(RenderError):
    """A render process ended in the middle of a chunk (crashed, killed by the OOM killer, …)."""


# ----- parent side


def _environment_key(backend: str) -> str:
    # A process inherits its parent's environment once, when it starts: one started under another
    # CUDA_VISIBLE_DEVICES, PYTHONPATH or model folder must not render for this one.
    text = repr((backend, sorted(os.environ.items())))
    return hashlib.sha256(text.encode()).hexdigest()


class RenderProcess:
    """One child process and its two pipes."""

    def __init__(self, key: str) -> None:
        self.key = key
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            # It stays in the parent's process group, so SIGKILL to the group ends it with everything else; it
            # ignores SIGINT and SIGTERM (see the end of this module), so Ctrl-C in a terminal does not kill it
            # behind the parent's back, where its death would look like a crash of the worker: the parent stops it
            # on purpose (kill_render_processes).
            self.process = subprocess.Popen(
                [sys.executable, "-m", "framefarm.flows.render_process", str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
                os.close(fd)
            raise
        os.close(to_child_r)
        os.close(from_child_w)
        self.outbox = Connection(to_child_w, readable=False)
        self.inbox = Connection(from_child_r, writable=False)
        try:
            if not self.inbox.poll(START_TIMEOUT_S) or self.inbox.recv() != ("ready",):
                raise RenderProcessDied(f"a render process did not start within {START_TIMEOUT_S:g} s")
        except (EOFError, OSError):
            self.kill()
            raise RenderProcessDied(f"a render process ended while starting (exit code {self.process.returncode}); "
                                    "its error is in the worker's log") from None
        except BaseException:
            self.kill()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL and reap: a hung CUDA call ignores anything gentler."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.outbox.close()
        self.inbox.close()

    def close(self) -> None:
        """Let an idle process exit by itself (EOF on its pipe); kill it if it does not within a few seconds."""
        self.outbox.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.inbox.close()


class _Pool:
    """Idle render processes by environment key, and a cap on how many render at once per key."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: dict[str, list[RenderProcess]] = {}
        self._busy: dict[str, int] = {}
        self._live: set[RenderProcess] = set()  # idle and busy: what a stop has to kill

    def acquire(self, key: str, max_processes: int | None) -> RenderProcess:
        with self._cond:
            while max_processes is not None and self._busy.get(key, 0) >= max_processes:
                self._cond.wait()
            self._busy[key] = self._busy.get(key, 0) + 1
            stale = [p for k, ps in self._idle.items() if k != key for p in ps]
            self._idle = {key: self._idle.get(key, [])}
            idle = self._idle[key]
            while idle:
                process = idle.pop()
                if process.alive():
                    break
                process.kill()
                self._live.discard(process)
            else:
                process = None
        for old in stale:  # the environment changed (another GPU, another test): those processes will not be used
            old.close()
        with self._cond:
            self._live.difference_update(stale)
        if process is None:
            try:
                process = RenderProcess(key)
            except BaseException:
                self._done(key)
                raise
            with self._cond:
                self._live.add(process)
        return process

    def release(self, process: RenderProcess, reusable: bool) -> None:
        if reusable and process.alive():
            with self._cond:
                self._idle.setdefault(process.key, []).append(process)
        else:
            process.kill()
            with self._cond:
                self._live.discard(process)
        self._done(process.key)

    def _done(self, key: str) -> None:
        with self._cond:
            self._busy[key] -= 1
            self._cond.notify_all()

    def close_all(self) -> None:
        with self._cond:
            idle = [p for ps in self._idle.values() for p in ps]
            self._idle = {}
        for process in idle:
            process.close()
        with self._cond:
            self._live.difference_update(idle)

    def kill_all(self) -> None:
        """SIGKILL every render process, busy ones included: a stop must not wait for a chunk to finish. Frames are
        written atomically, so only the frame being rendered is lost."""
        with self._cond:
            live = list(self._live)
            self._live.clear()
            self._idle = {}
        for process in live:
            if process.process.poll() is None:
                process.process.kill()
        for process in live:
            process.process.wait()


_POOL = _Pool()
atexit.register(_POOL.close_all)


def render_in_process(chunk: Any, job: Any, backend: str, store_root: str, *, timeout: float,
                      max_processes: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Render ``chunk`` in a render process; kill it if no frame is committed for ``timeout`` seconds.

    Args:
        chunk, job, backend, store_root: as for ``render_chunk``.
        timeout: seconds without a committed frame after which the chunk counts as hung.
        max_processes: render processes at once for this backend in this process (``None``: one per chunk in
            flight). A model-loading backend uses 1, so a GPU holds one copy of the model, as it did in-process.

    Returns:
        ``(rendered, reused)`` frame numbers, as :func:`framefarm.flows.chunk_work.render_chunk_frames`.

    Raises:
        ChunkHung: no frame for ``timeout`` seconds; the process was killed.
        RenderProcessDied: the process ended mid-chunk.
        Whatever the renderer raised (``InputError`` stays an ``InputError``, so it is not retried).
    """
    from framefarm.flows.chunk_work import frame_committed

    key = _environment_key(backend)
    process = _POOL.acquire(key, max_processes)
    reusable = False
    try:
        threads = None
        if "torch" in sys.modules:  # render with the parent's torch thread count (tests pin it to 1)
            threads = sys.modules["torch"].get_num_threads()
        process.outbox.send((chunk, job, backend, store_root, threads))
        last_frame = time.monotonic()
        while True:
            if not process.inbox.poll(timeout):
                raise ChunkHung(
                    f"chunk {chunk.index} of {job.name} committed no frame for {timeout:g} s "
                    f"(farm.chunk_timeout): render process {process.pid} was killed and the chunk will be retried. "
                    "If frames of this job really take that long, raise farm.chunk_timeout")
            try:
                kind, *payload = process.inbox.recv()
            except (EOFError, OSError):
                code = process.process.wait()
                raise RenderProcessDied(f"the render process of chunk {chunk.index} of {job.name} ended with exit "
                                        f"code {code} {time.monotonic() - last_frame:.0f} s after its last frame; "
                                        "the chunk will be retried") from None
            if kind == "frame":
                last_frame = time.monotonic()
                frame_committed(payload[0])
                continue
            reusable = True  # the process answered: it is healthy, whatever the renderer raised
            if kind == "done":
                return payload[0], payload[1]
            raise _unpack_error(payload[0])
    finally:
        _POOL.release(process, reusable)


def close_render_processes() -> None:
    """End every idle render process (they also end with their parent)."""
    _POOL.close_all()


def kill_render_processes() -> None:
    """Kill every render process of this process now, busy or idle (a stop by the user)."""
    _POOL.kill_all()


# ----- errors across the pipe


# Pickle here carries only exceptions between framefarm's own parent and child over a private pipe (never a file,
# never user data from outside), so the pickle opt-in for model files does not apply.
def _pack_error(exc: BaseException) -> tuple:
    if isinstance(exc, InputError):  # its args are the formatted message, not (field, value, problem, fix)
        return ("input", exc.field, exc.value, exc.problem, exc.fix)
    try:
        copy = pickle.loads(pickle.dumps(exc))
        if type(copy) is type(exc) and str(copy) == str(exc):
            return ("pickled", pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - an exception that does not survive pickling is sent as text
        pass
    return ("text", f"{type(exc).__name__}: {exc}")


def _unpack_error(packed: tuple) -> BaseException:
    if packed[0] == "input":
        return InputError(*packed[1:])
    if packed[0] == "pickled":
        return pickle.loads(packed[1])
    return RenderError(packed[1])


# ----- child side


def _exit_with_parent(parent: int) -> None:
    # Between chunks a dead parent is EOF on the pipe; during a long chunk only this notices it. Checked by pid
    # rather than PR_SET_PDEATHSIG, which fires when the parent *thread* ends (Prefect's task threads come and go).
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(3)


def serve(inbox: Connection, outbox: Connection) -> None:
    """Take chunks from ``inbox`` until it closes; report frames, the result or the error on ``outbox``."""
    from framefarm.flows.chunk_work import render_chunk_frames
    from framefarm.storage import FrameStore

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    outbox.send(("ready",))
    while True:
        try:
            chunk, job, backend, store_root, threads = inbox.recv()
        except EOFError:
            return
        try:
            if threads is not None:
                import torch

                torch.set_num_threads(threads)
            store = FrameStore(store_root, job.name)
            rendered, reused = render_chunk_frames(chunk, job, backend, store,
                                                   on_frame=lambda frame: outbox.send(("frame", frame)))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the task, which decides about retries
            outbox.send(("error", _pack_error(exc)))
        else:
            outbox.send(("done", rendered, reused))


if __name__ == "__main__":
    import signal

    # First thing, before the heavy imports in serve(): a stop is the parent's to make (see RenderProcess).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
