"""Stopping a render on request (SIGINT, SIGTERM): a process-wide flag, the signal handlers that set it, and the
ordered stop of the render's processes.

A stop is not a failure. Render processes are killed on purpose, so the chunk that was waiting on one must not be
recorded against the worker (three records and the worker is blocklisted for the job, and the resume the user was
promised fails). Tasks and the flow read this flag to tell "killed because we are stopping" from "crashed", and to
start no new work once it is set.
"""

from __future__ import annotations

import threading
from collections.abc import Collection

from framefarm.errors import RenderStopped

_STOP = threading.Event()


def request_stop() -> None:
    """Ask every render in this process to stop: no new chunks, no retries, no failure records."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def raise_if_stopped(where: str) -> None:
    """Raise :class:`RenderStopped` when a stop was requested (``where`` says what was about to start)."""
    if _STOP.is_set():
        raise RenderStopped(f"stopped before {where}: finished frames are kept")


# ffmpeg runs as a child of the flow's process (framefarm.video); the names its binaries have.
FFMPEG_NAMES = ("ffmpeg", "ffprobe")
FFMPEG_STOP_WAIT_S = 3.0


def stop_render_work(keep: Collection[int] = ()) -> None:
    """Set the stop flag, then end the work in the order that loses nothing: render processes first (frames are
    written atomically, so only frames being rendered are lost), with them any other rendering descendant (the
    process pool of ``--gpus`` and its render processes), then ffmpeg (a partial video is never published under its
    final name). Processes in ``keep`` and their descendants (Prefect's server) are the caller's to stop, last,
    after the flow has recorded its end."""
    import psutil

    from framefarm.flows.render_process import kill_render_processes

    request_stop()
    kill_render_processes()
    kept = set(keep)
    for pid in keep:
        with _gone():
            kept.update(child.pid for child in psutil.Process(pid).children(recursive=True))
    descendants = [p for p in psutil.Process().children(recursive=True) if p.pid not in kept]
    workers = [p for p in descendants if not _is_ffmpeg(p) and not _is_resource_tracker(p)]
    for process in workers:
        with _gone():
            process.kill()
    psutil.wait_procs(workers, timeout=FFMPEG_STOP_WAIT_S)
    ffmpegs = [p for p in descendants if _is_ffmpeg(p)]
    for child in ffmpegs:
        with _gone():
            child.terminate()
    _, alive = psutil.wait_procs(ffmpegs, timeout=FFMPEG_STOP_WAIT_S)
    for child in alive:
        with _gone():
            child.kill()


def _is_ffmpeg(process) -> bool:
    import psutil

    try:
        return process.name().startswith(FFMPEG_NAMES)
    except psutil.Error:
        return False


def _is_resource_tracker(process) -> bool:
    # multiprocessing's helper that cleans up after the pool; it exits by itself once the CLI does.
    import psutil

    try:
        return any("resource_tracker" in part for part in process.cmdline())
    except psutil.Error:
        return False


def _gone():
    import contextlib

    import psutil

    return contextlib.suppress(psutil.NoSuchProcess)


class StopOnSignals:
    """While active, SIGINT and SIGTERM request a stop instead of raising ``KeyboardInterrupt`` wherever the main
    thread happens to be. A second signal exits at once (render processes and the server end with this process).

    ``signal_name`` is the first signal's name, or ``None``. Must be entered in the main thread.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        import os
        import signal

        if self.signal_name is not None:
            os._exit(128 + signal.SIGINT)  # asked twice: the user wants out now
        self.signal_name = signal.Signals(signum).name
        request_stop()

    def __enter__(self) -> StopOnSignals:
        import signal

        for name in self.SIGNALS:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)
