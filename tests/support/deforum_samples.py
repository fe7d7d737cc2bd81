"""Deforum's published settings files, when this machine has them: ``$FRAMEFARM_DEFORUM_SAMPLES``, else a
``shared/data/deforum-settings`` folder beside any folder above the tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _samples_dir() -> Path | None:
    env = os.environ.get("FRAMEFARM_DEFORUM_SAMPLES")
    candidates = [Path(env)] if env else []
    candidates += [parent / "shared" / "data" / "deforum-settings" for parent in Path(__file__).resolve().parents]
    return next((c for c in candidates if c.is_dir() and any(c.glob("*.txt"))), None)


SAMPLES = _samples_dir()
needs_samples = pytest.mark.skipif(SAMPLES is None,
                                   reason="Deforum sample settings not found (set FRAMEFARM_DEFORUM_SAMPLES)")
SAMPLE_FILES = sorted(SAMPLES.glob("*.txt")) if SAMPLES else []
