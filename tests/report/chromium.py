"""Headless Chromium driven over the DevTools protocol: load a page, collect console errors, query the DOM, screenshot.

Debian's ``chromium`` package (``apt-get install -y chromium``), started with the flags the test setup uses and
``--remote-debugging-port=0``; the DevTools endpoint is read from its stderr. The protocol is spoken over the
``websockets`` package's sync client (a Prefect dependency, so it is in the venv). Console messages of level error,
uncaught exceptions, failed loads and CSP violations are collected as ``errors``; every URL the page requested is in
``requests`` (a report must request nothing but ``file:`` and ``data:`` URLs).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio", "--autoplay-policy=no-user-gesture-required")
_ENDPOINT = re.compile(r"DevTools listening on (ws://\S+)")
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    explicit = os.environ.get("FRAMEFARM_CHROMIUM")
    if explicit and os.access(explicit, os.X_OK):
        return explicit
    for candidate in CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


class Page:
    """One browser with one page; use as a context manager."""

    def __init__(self, executable: str, *, width: int = 1280, height: int = 900) -> None:
        self.executable = executable
        self.size = (width, height)
        self.errors: list[str] = []
        self.console: list[str] = []
        self.requests: list[str] = []
        self._id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Page:
        from websockets.sync.client import connect

        self._profile = tempfile.mkdtemp(prefix="framefarm-chromium-")
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
             f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)
        try:
            browser_url = self._wait_for_endpoint()
            port = re.search(r":(\d+)/", browser_url).group(1)
            page_url = self._page_target(port)
            self.ws = connect(page_url, max_size=None, open_timeout=20)
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable")
        except BaseException:
            self._close_process()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        self._close_process()

    def _close_process(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:  # zygote, renderer and utility processes left behind, if any (its own session: only Chromium's)
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _wait_for_endpoint(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._log.seek(0)
            found = _ENDPOINT.search(self._log.read().decode(errors="replace"))
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self._log.seek(0)
        raise RuntimeError(f"chromium did not start its DevTools endpoint:\n{self._log.read().decode()[-2000:]}")

    @staticmethod
    def _page_target(port: str, timeout: float = 10.0) -> str:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                targets = json.loads(answer.read())
            pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise RuntimeError("chromium opened no page target")

    # -- protocol

    def _handle(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.errors.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"Uncaught: {description}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            self.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.errors.append(f"load failed: {params.get('errorText')} ({params.get('blockedReason', '')})")
        self._events.append(message)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        self._id += 1
        ident = self._id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._handle(message)

    def pump(self, seconds: float) -> None:
        """Collect events for a while."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._handle(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                return

    # -- conveniences

    def open(self, url: str, *, ready: str = "document.readyState === 'complete'", timeout: float = 30.0) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_for(ready, timeout=timeout)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, *, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            self.pump(0.1)
        raise TimeoutError(f"not true after {timeout:.0f} s: {expression}")

    def screenshot(self, path: str | Path, clip: dict[str, float] | None = None) -> Path:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": True}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        data = self.call("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path
