"""Fault-injection helpers: how many trials to run, and a log of every trial for the summary table.

CI runs a bounded number of trials per fault (``FRAMEFARM_FAULT_TRIALS``, default 2); ``benchmarks/faults.py`` runs
the full version (20) and turns the log (``FRAMEFARM_FAULT_LOG``, one JSON line per trial) into a table.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

DEFAULT_TRIALS = 2


def fault_trials(default: int = DEFAULT_TRIALS) -> int:
    """Trials per fault: ``$FRAMEFARM_FAULT_TRIALS`` (the older ``$FRAMEFARM_KILL_TRIALS`` too), else ``default``."""
    for name in ("FRAMEFARM_FAULT_TRIALS", "FRAMEFARM_KILL_TRIALS"):
        value = os.environ.get(name)
        if value:
            return max(1, int(value))
    return default


def frame_hashes(frames_dir: Path) -> dict[str, str]:
    """SHA-256 of every finished frame file in a local frames folder, by file name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(frames_dir).glob("[0-9]*.png"))}


class FaultLog:
    """Records one line per trial: which fault, whether the job survived it, and how many finished frames it lost.

    "Survived" means the job ended complete with frames identical to a clean run (possibly after a resume), or
    failed with a clear error and every finished frame intact. "Frames lost" counts frames that were finished
    (recorded in the manifest) before the fault and were damaged, missing or different afterwards.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path

    def trial(self, fault: str, *, survived: bool, frames_lost: int, outcome: str, **detail) -> None:
        if not self.path:
            return
        line = {"fault": fault, "survived": bool(survived), "frames_lost": int(frames_lost), "outcome": outcome,
                **detail}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")


@pytest.fixture()
def fault_log() -> FaultLog:
    return FaultLog(os.environ.get("FRAMEFARM_FAULT_LOG"))

