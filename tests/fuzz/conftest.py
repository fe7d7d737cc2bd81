"""Fuzzing helpers: every call is time-boxed (a hang fails the example), and the working folder is watched so a
parser that writes a file anywhere is caught."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

# Hypothesis' own budget per test; the CI default keeps all fuzz tests together well under a minute. The full run
# (benchmarks/faults.py) raises it with FRAMEFARM_FUZZ_EXAMPLES.
EXAMPLES = int(os.environ.get("FRAMEFARM_FUZZ_EXAMPLES", "80"))
CALL_LIMIT_S = 5.0  # no parser needs more than milliseconds; 5 s is a hang on any machine


class Hang(Exception):
    """An input made a parser run past :data:`CALL_LIMIT_S`."""


@contextmanager
def time_box(seconds: float = CALL_LIMIT_S):
    """Raise :class:`Hang` if the body runs longer than ``seconds`` (SIGALRM: main thread only, as pytest runs)."""

    def expired(_signum, _frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    """Run in an empty folder and fail if anything was written into it."""
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    yield tmp_path
    assert snapshot(tmp_path) == before, "a parser wrote files"
