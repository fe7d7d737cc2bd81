"""Finding the ffmpeg binary and checking it can do what a job needs.

Order: ``$FRAMEFARM_FFMPEG``, then the binary imageio-ffmpeg ships inside its wheel (so ``pip install`` alone
guarantees one on a fresh machine; imageio-ffmpeg also honours ``$IMAGEIO_FFMPEG_EXE``), then ``ffmpeg`` on PATH.

framefarm builds ffmpeg argv lists itself instead of using ffmpeg-python: that package is unmaintained since 2019,
depends on ``future`` (CVE-2025-50817), needs ffprobe (which imageio-ffmpeg does not ship), and its ``format=``
keyword collides with the HAP encoder's own ``-format`` option. A list of strings is also what the error message
shows, so a failing command can be pasted into a shell.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence

from framefarm.errors import RenderError

STDERR_TAIL = 3000  # characters of ffmpeg's stderr an error keeps: its last lines say what went wrong


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary framefarm uses (see the module docstring for the search order)."""
    explicit = os.environ.get("FRAMEFARM_FFMPEG")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise RenderError(f"FRAMEFARM_FFMPEG={explicit!r} is not an executable file")
        return explicit
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        pass
    found = shutil.which("ffmpeg")
    if found:
        return found
    raise RenderError(
        "no ffmpeg found: install framefarm's dependencies (imageio-ffmpeg ships one), "
        "Debian's `apt install ffmpeg`, or set FRAMEFARM_FFMPEG to a binary"
    )


@functools.cache
def available_encoders() -> frozenset[str]:
    """Names of the encoders the binary was built with (``libx264``, ``prores_ks``, ``hap`` …)."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=False)
    names = set()
    for line in result.stdout.splitlines():
        parts = line.split()
        # Lines look like " V....D libx264   libx264 H.264 / AVC ..."; the flags column is 6 characters.
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return frozenset(names)


def require_encoders(*names: str) -> None:
    """Raise a clear error naming every encoder this ffmpeg lacks, before any frame is rendered."""
    missing = [name for name in names if name not in available_encoders()]
    if missing:
        raise RenderError(
            f"ffmpeg at {ffmpeg_exe()} lacks the encoder(s) {', '.join(missing)}; install an ffmpeg built with them "
            "(imageio-ffmpeg's bundled binary has all of framefarm's) or point FRAMEFARM_FFMPEG at one"
        )


def reap(process) -> None:
    """Kill an ffmpeg process that still runs (its consumer stopped early, or an error came first) and wait for it,
    so no ffmpeg outlives the call that started it."""
    if process.poll() is None:
        process.kill()
    process.wait()


def ffmpeg_error(failure: str, command: Sequence[str], stderr: str | bytes) -> RenderError:
    """The error for a failed ffmpeg: ``failure`` (e.g. ``"ffmpeg failed to encode x.mp4 (exit 1)"``), then the
    command, which can be pasted into a shell, and the end of ffmpeg's stderr."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    return RenderError(f"{failure}.\ncommand: {' '.join(command)}\n=== stderr ===\n{text[-STDERR_TAIL:]}")


def run_ffmpeg(args: list[str], *, what: str) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg to completion; on failure raise with the command and the end of its stderr."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ffmpeg_error(f"ffmpeg failed to {what} (exit {result.returncode})", command, result.stderr)
    return result
