"""The renderer protocol: what every backend (preview, diffusers, …) implements."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from framefarm.animation.plan import ChunkSpec, plan_job, stored_frames
from framefarm.errors import RenderError

if TYPE_CHECKING:  # the type only: importing the job models at run time would pull in pydantic
    from framefarm.job.schema import AnyJob


@dataclass(frozen=True)
class RenderContext:
    """What a renderer may read besides its chunk.

    Attributes:
        job: the validated job spec.
        source_frame: ``source_frame(i)`` returns source frame ``i`` (video-to-video), prepared in the store.
        previous_frame: ``previous_frame(i)`` returns the stored output frame ``i`` (a Deforum chain resumes
            from it).
        controls: where ControlNet control images are stored per unit and frame
            (:class:`framefarm.renderers.control_cache.ControlStore`), so a rerun skips the preprocessors; ``None``
            runs them every time.
        timeline: the whole job's per-frame inputs (seeds, prompts, schedule values) as one chunk spanning every
            frame — what a kind reads when a frame depends on frames outside its chunk (a Deforum chain looks
            back, an AnimateDiff clip's windows and prompt travel span segments). Renderers never plan the job
            themselves; :meth:`for_job` makes one.
    """

    job: AnyJob
    source_frame: Callable[[int], np.ndarray] | None = None
    previous_frame: Callable[[int], np.ndarray] | None = None
    controls: Any = None
    timeline: ChunkSpec | None = None

    @classmethod
    def for_job(cls, job: AnyJob, **fields: Any) -> RenderContext:
        """A context for ``job`` with its :attr:`timeline` planned here."""
        return cls(job=job, timeline=job_timeline(job), **fields)

    def whole_job(self) -> ChunkSpec:
        """:attr:`timeline`, which a kind that looks past its chunk needs."""
        if self.timeline is None:
            raise RenderError(f"a {self.job.kind} render needs the whole job's per-frame values "
                              "(RenderContext.timeline; RenderContext.for_job makes them)")
        return self.timeline


def job_timeline(job: AnyJob) -> ChunkSpec:
    """The whole job's per-frame inputs as one chunk over every stored frame (every variation's; frame keys
    included, unused here)."""
    return plan_job(job, renderer="timeline", chunk_size=stored_frames(job), cut_at_shots=False).chunks[0]


class Renderer(Protocol):
    """A backend. ``name@version`` enters every frame key, so bump ``version`` when output pixels change."""

    name: str
    version: str

    @property
    def id(self) -> str: ...

    def render(self, chunk: ChunkSpec, frames: Sequence[int], context: RenderContext) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame number, RGB uint8 array)`` for each requested frame of the chunk, in order.

        ``frames`` is the subset of ``chunk.frames`` still to render (the rest are done); yielding frame by frame
        lets the caller commit each one as soon as it exists, so a crash loses at most the frame in hand.
        """
        ...
