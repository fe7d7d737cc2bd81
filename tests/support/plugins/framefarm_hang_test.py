"""Test-only renderer plug-ins, found through the ``framefarm.renderers`` entry points of the dist-info folder beside
this file (a test puts this folder on ``sys.path`` and ``PYTHONPATH``).

``hang-test`` really hangs: the preview renderer, except that it blocks forever the first time it reaches frame
``$FRAMEFARM_HANG_FRAME``. A marker file in ``$FRAMEFARM_HANG_MARKERS`` (holding the hung process's pid) makes the retry render normally, so a job with it completes once the watchdog has killed the hung process."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from framefarm.renderers.preview import PreviewRenderer


class HangOnceRenderer(PreviewRenderer):
    name = "hang-test"

    def render(self, chunk, frames, context):
        hang_at = int(os.environ["FRAMEFARM_HANG_FRAME"])
        marker = Path(os.environ["FRAMEFARM_HANG_MARKERS"]) / f"hung-at-{hang_at}"
        for frame, image in super().render(chunk, frames, context):
            if frame == hang_at and not marker.exists():
                marker.write_text(str(os.getpid()))
                threading.Event().wait()  # blocks forever: no timeout, no exception, no progress
            yield frame, image


class GateRenderer(PreviewRenderer):
    """The preview renderer that renders nothing until the file ``$FRAMEFARM_GATE`` exists: a test holds a worker
    busy with a job for exactly as long as it needs to (tests/integration/test_farm_postgres.py)."""

    name = "gate-test"

    def render(self, chunk, frames, context):
        gate = Path(os.environ["FRAMEFARM_GATE"])
        while not gate.exists():
            time.sleep(0.2)
        yield from super().render(chunk, frames, context)
