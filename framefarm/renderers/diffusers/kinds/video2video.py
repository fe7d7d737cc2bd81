"""video2video: every source frame img2img'd at the frame's ``strength`` (0 keeps the source, 1 repaints it — the
meaning the preview renderer gives it), guided by 0…N ControlNet units whose control images come from the unit's
preprocessor applied to that source frame (or the unit's fixed ``image``).

Seed lock and batching (why frames are byte-identical across chunkings and workers):

1. Each frame's noise comes from its own CPU generator seeded with the frame's seed (:mod:`..denoise`).
2. Batched matmuls are not bit-identical across batch sizes, so which frames share a batch is fixed by the global
   frame index: batch ``b`` is frames ``b·B … b·B+B−1`` (``B`` = ``job.batch_size``). A chunk always renders its
   batches whole — also when only some of their frames are still missing — and yields only the requested frames.
3. Within a batch, frames whose settings differ (strength, CFG, ControlNet weights, LoRA tags) are run as separate
   groups — again fixed by the batch's frames alone.

Overlap: the next batch's source frames and control images (PNG decode, Canny: CPU work that releases the GIL) are
made on a helper thread while this batch denoises (on an H200 they were 9 % of a batch's wall time with the GPU
idle), and stacked there too, ready to copy (:class:`~framefarm.renderers.diffusers.vae.StagedFrames`); each batch's
pixels are fetched only after the next batch's work is queued behind them
(:class:`~framefarm.renderers.diffusers.vae.PendingFrames`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from framefarm.animation.plan import ChunkSpec
from framefarm.animation.source_color import color_match_frame
from framefarm.errors import RenderError
from framefarm.renderers.base import RenderContext
from framefarm.renderers.diffusers.components import Components, load_components
from framefarm.renderers.diffusers.conditioning import split_networks
from framefarm.renderers.diffusers.controls import fixed_image, unit_control_images
from framefarm.renderers.diffusers.denoise import FrameSettings, Group, denoise_group
from framefarm.renderers.diffusers.vae import PendingFrames, StagedFrames, resolve
from framefarm.renderers.oom import render_halving_on_oom


def render(chunk: ChunkSpec, frames: Sequence[int], context: RenderContext) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame, RGB uint8)`` for the requested frames of a video2video chunk, in order."""
    job = context.job
    wanted = set(frames)
    if context.source_frame is None:
        raise RenderError("video2video needs the prepared source frames")
    components = load_components(job)
    batches = chunk_batches(job, chunk, wanted)

    def finish(members, images, prepared):
        images = resolve(images)
        for frame in members:
            if frame in wanted:  # colour match to the source, when asked (animation/source_color.py)
                yield frame, color_match_frame(job, images[frame], frame, prepared.sources.__getitem__)

    pending = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-inputs") as helper:
        upcoming = helper.submit(batch_inputs, components, job, chunk, batches[0], context)
        for n, members in enumerate(batches):
            try:
                prepared = upcoming.result()
                if n + 1 < len(batches):
                    upcoming = helper.submit(batch_inputs, components, job, chunk, batches[n + 1], context)
                images = render_batch(components, job, chunk, members, prepared)
            except BaseException:
                # This batch's inputs or its GPU call failed; the previous batch is finished: keep its frames.
                if pending is not None:
                    yield from finish(*pending)
                raise
            if pending is not None:
                yield from finish(*pending)
            pending = (members, images, prepared)
        if pending is not None:
            yield from finish(*pending)


def chunk_batches(job, chunk: ChunkSpec, wanted: set[int]) -> list[list[int]]:
    """The whole batches holding ``wanted`` frames (all inside the chunk: the plan cuts chunks at batch bounds)."""
    size = job.batch_size
    batches = []
    for batch in sorted({f // size for f in wanted}):
        members = list(range(batch * size, min((batch + 1) * size, job.frames)))
        if any(not chunk.start <= f < chunk.stop for f in members):
            raise RenderError(f"chunk {chunk.index} ({chunk.start}…{chunk.stop - 1}) does not hold all of batch "
                              f"{batch} (frames {members[0]}…{members[-1]}); chunks must be whole batches of {size}")
        batches.append(members)
    return batches


def frame_settings(job, chunk: ChunkSpec, frame: int) -> tuple[FrameSettings, str, str]:
    """A frame's settings and its prompts without extra-network tags."""
    i = chunk.local(frame)
    positive, negative, networks = split_networks(chunk.prompts[i], chunk.negative_prompts[i])
    weights = []
    for index, unit in enumerate(job.controlnet):
        schedule = chunk.values.get(f"controlnet.{index}.weight")
        weights.append(float(schedule[i]) if schedule is not None else float(unit.weight))
    cfg = chunk.values.get("cfg_scale")
    refs = job.model
    settings = FrameSettings(strength=float(chunk.values["strength"][i]),
                             cfg=float(cfg[i]) if cfg is not None else float(refs.cfg_scale), steps=refs.steps,
                             sampler=refs.sampler, clip_skip=refs.clip_skip, control_weights=tuple(weights),
                             networks=networks)
    return settings, positive, negative


@dataclass(frozen=True)
class BatchInputs:
    """What a batch needs before any model runs: its source frames and each unit's control images, and both again
    as :class:`~framefarm.renderers.diffusers.vae.StagedFrames` of the whole batch (stacked on the helper thread, for
    a group holding the whole batch: the usual one)."""

    sources: dict[int, np.ndarray]
    controls: dict[tuple[int, int], np.ndarray]  # (unit index, frame) → control image
    members: tuple[int, ...] = ()
    staged_sources: StagedFrames | None = None
    staged_controls: dict[int, StagedFrames] = field(default_factory=dict)  # unit index → the batch's images


def batch_inputs(components: Components, job, chunk: ChunkSpec, members: list[int],
                 context: RenderContext) -> BatchInputs:
    sources = {f: context.source_frame(f) for f in members}
    controls: dict[tuple[int, int], np.ndarray] = {}
    for index, unit, _ in components.units:
        fixed = fixed_image(job, index, unit)
        inputs = [(f, fixed if fixed is not None else sources[f], chunk.seeds[chunk.local(f)]) for f in members]
        # Stored per unit and frame in the job's store: a rerun or resume skips the preprocessor.
        arrays = unit_control_images(components, index, unit, inputs, context.controls)
        controls.update({(index, f): image for f, image in zip(members, arrays)})
    return BatchInputs(sources, controls, tuple(members), StagedFrames([sources[f] for f in members]),
                       {index: StagedFrames([controls[(index, f)] for f in members]) for index, _, _ in components.units})


def render_batch(components: Components, job, chunk: ChunkSpec, members: list[int], prepared: BatchInputs
                 ) -> dict[int, np.ndarray | PendingFrames]:
    """Render the frames of one batch; frames with equal settings share a pipeline call."""
    groups: dict[FrameSettings, list[tuple[int, str, str]]] = {}
    for frame in members:
        settings, positive, negative = frame_settings(job, chunk, frame)
        groups.setdefault(settings, []).append((frame, positive, negative))
    images: dict[int, np.ndarray | PendingFrames] = {}
    for settings, items in groups.items():
        def run(part, settings=settings, items=items):
            frames = [frame for frame, _, _ in part]
            seeds = [chunk.seeds[chunk.local(f)] for f in frames]
            positives, negatives = [p for _, p, _ in part], [n for _, _, n in part]
            # Compiled kernels are specialised to the batch size: a short group (the job's last, partial batch) is
            # filled up with copies of its last frame, numbered -1, -2, … and dropped, rather than compiling the
            # models again for one batch. Not when memory forced a halving (``part`` is then a part of ``items``).
            fill = job.batch_size - len(part) if components.compiled is not None and part == items else 0
            if not fill and tuple(frames) == prepared.members:  # the whole batch, stacked on the helper thread
                sources, controls = prepared.staged_sources, dict(prepared.staged_controls)
            else:
                sources = [prepared.sources[f] for f in frames]
                controls = {i: [prepared.controls[(i, f)] for f in frames] for i, _, _ in components.units}
                frames += [-k for k in range(1, fill + 1)]
                for column in (sources, seeds, positives, negatives, *controls.values()):
                    column += column[-1:] * fill
            result = denoise_group(components, job, Group(
                frames=frames, seeds=seeds, positives=positives, negatives=negatives, settings=settings,
                init=sources, controls=controls))
            return {frame: image for frame, image in result.items() if frame >= 0}

        # Out of GPU memory: the group is rendered again in halves (framefarm/renderers/oom.py says what that
        # keeps deterministic and what it may change by a level or so).
        images.update(render_halving_on_oom(run, items))
    return images

