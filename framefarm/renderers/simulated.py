"""A simulated GPU: each frame takes a fixed wall-clock time (a sleep, no CPU burn) and is a tiny flat image.

For measuring the farm's control plane at scale on a small box: sixteen "GPUs" sleep side by side on two cores, so
what the machine spends is the orchestration's own cost. The pixels are a pure function of the frame's seed and
number (byte-identical on re-render); the sleep never changes them.
``$FRAMEFARM_SIMULATED_SECONDS_PER_FRAME`` sets the time per frame (default 1.0).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence

import numpy as np

from framefarm.animation.plan import ChunkSpec
from framefarm.renderers.base import RenderContext

SECONDS_PER_FRAME_ENV = "FRAMEFARM_SIMULATED_SECONDS_PER_FRAME"


class SimulatedGpuRenderer:
    name = "simulated"
    version = "1"

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, chunk: ChunkSpec, frames: Sequence[int], context: RenderContext) -> Iterator[tuple[int, np.ndarray]]:
        seconds = float(os.environ.get(SECONDS_PER_FRAME_ENV, "1.0"))
        job = context.job
        for frame in frames:
            time.sleep(seconds)
            seed = chunk.seeds[chunk.local(frame)]
            colour = np.array([seed % 251, frame % 251, (seed >> 8) % 251], dtype=np.uint8)
            yield frame, np.broadcast_to(colour, (job.height, job.width, 3)).copy()
