"""A Prefect API server for one CLI render, started and stopped by the CLI itself.

Prefect starts a temporary ("ephemeral") server on its own when no ``PREFECT_API_URL`` is set; this starts the same
server (the same uvicorn command), with two differences a render needs:

* it runs in its own session, so Ctrl-C in a terminal (SIGINT to the whole foreground process group) does not kill
  it while the render still talks to it: the CLI stops the render first and the server last;
* it dies with the CLI (``PR_SET_PDEATHSIG`` on Linux), so a render killed with SIGKILL leaves no server behind.

When ``PREFECT_API_URL`` is set (a ``prefect server start`` the user runs, or a farm's server), that server is used
and nothing is started: a render then skips the server's start-up (several seconds).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

# uvicorn exits with this code when its port was taken between our choice and its bind: choose another port.
PORT_IN_USE_EXIT = 3
HEALTH_POLL_S = 0.1
STOP_WAIT_S = 5.0
PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _libc_prctl():
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


# Looked up now, not in the child: between fork and exec only the forking thread exists, and loading a library
# there could wait forever on a loader lock another thread of the parent held at the fork.
_PRCTL = _libc_prctl() if sys.platform == "linux" else None


def _die_with(parent: int) -> Callable[[], None]:
    def in_child() -> None:  # runs in the child between fork and exec: as little as possible
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return in_child


class LocalPrefectServer:
    """A Prefect API server process on a free local port; ``api_url`` once :meth:`start` returned."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _spawn(self) -> subprocess.Popen:
        import prefect

        self.port = _free_port()
        # What Prefect's own ephemeral server sets: no UI, the ephemeral server's database and services.
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
                   "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                   "--log-level", "error", "--lifespan", "on"]
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with(os.getpid()) if _PRCTL is not None else None)

    def start(self, timeout: float, stop_requested: Callable[[], bool] = lambda: False) -> bool:
        """Start the server and wait until it answers. Returns ``False`` when ``stop_requested()`` became true
        while waiting (the server is then stopped again).

        Raises:
            RuntimeError: it did not answer within ``timeout`` seconds, or exited.
        """
        import httpx

        self.process = self._spawn()
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if stop_requested():
                    self.stop()
                    return False
                code = self.process.poll()
                if code == PORT_IN_USE_EXIT:
                    self.process = self._spawn()
                    continue
                if code is not None:
                    raise RuntimeError(f"the local Prefect server exited with code {code} while starting")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return True
                time.sleep(HEALTH_POLL_S)
        self.stop()
        raise RuntimeError(f"the local Prefect server did not answer within {timeout:g} s "
                           "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)")

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down cleanly), then SIGKILL after a few seconds."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def use_local_server(timeout: float, stop_requested: Callable[[], bool] = lambda: False) -> LocalPrefectServer | None:
    """Point Prefect at a server for this process: the configured one if any (returns ``None``), else a new
    :class:`LocalPrefectServer` (returned, for the caller to stop). Must run before any flow starts, in the main
    thread (the server dies with the thread that started it)."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return None
    server = LocalPrefectServer()
    if not server.start(timeout, stop_requested):
        return server
    os.environ["PREFECT_API_URL"] = server.api_url
    refresh_global_settings_context()  # Prefect read its settings at import; let it see the new URL
    return server
