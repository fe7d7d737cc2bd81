"""An AnimateDiff chunk is rendered pipelined one VAE slice deep: a slice's pixels are fetched only after the next
slice's decode (or the next segment's denoise) is queued, segment latents stay tensors on the model's device, and
the frames are those of a chunk of one segment. Tiny models on CPU, real renders."""

from __future__ import annotations

import numpy as np

from tests.renderers.animatediff.conftest import ad_job


def _render(job, monkeypatch, *, chunk_size: int, events: list | None = None) -> dict[int, np.ndarray]:
    from framefarm.animation.plan import plan_job
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.kinds.animatediff import renderer
    from framefarm.renderers.diffusers.renderer import DiffusersRenderer

    with monkeypatch.context() as patch:
        patch.setattr(renderer, "vae_slice", lambda width, height: 4)  # two slices per 8-frame segment
        if events is not None:
            queue, denoise = renderer.queue_decode, renderer._denoise

            def queued(vae, latents, frames, **kwargs):
                pending = queue(vae, latents, frames, **kwargs)
                events.append(("queue", frames[0]))
                fetch = pending.result

                def fetched():
                    events.append(("fetch", pending.frames[0]))
                    return fetch()

                pending.result = fetched
                return pending

            def denoised(setup, job, seg, context):
                events.append(("denoise", seg.start))
                return denoise(setup, job, seg, context)

            patch.setattr(renderer, "queue_decode", queued)
            patch.setattr(renderer, "_denoise", denoised)
        renderer.clear_segment_cache()
        plan = plan_job(job, renderer=DiffusersRenderer().id, chunk_size=chunk_size)
        frames: dict[int, np.ndarray] = {}
        for chunk in plan.chunks:
            frames.update(renderer.render(chunk, list(chunk.frames), RenderContext.for_job(job)))
        cached = list(renderer._latents.values())
        renderer.clear_segment_cache()
    if events is not None:
        events.append(("cached", cached))
    return frames


def test_next_slice_is_queued_before_a_slice_is_fetched(monkeypatch, models_dir, motion_models):
    import torch

    job = ad_job(models_dir, "frames=24", "animatediff.segment_frames=8", "animatediff.segment_overlap=2")
    events: list = []
    pipelined = _render(job, monkeypatch, chunk_size=24, events=events)
    cached = events.pop()[1]
    assert cached and all(isinstance(latents, torch.Tensor) for latents in cached)  # never copied to numpy
    order = {event: position for position, event in enumerate(events)}
    starts = sorted(start for kind, start in events if kind == "queue")
    assert starts == [0, 4, 8, 12, 16, 20] and sorted(f for k, f in events if k == "fetch") == starts
    for first, following in zip(starts, starts[1:]):
        assert order[("queue", following)] < order[("fetch", first)]
    # The next segment's denoise is queued before the last slice of the segment before it is fetched.
    assert order[("denoise", 8)] < order[("fetch", 4)]
    assert order[("denoise", 16)] < order[("fetch", 12)]
    assert sorted(pipelined) == list(range(24))
    # Chunks of one segment each (nothing to pipeline across segments) render the same frames.
    alone = _render(job, monkeypatch, chunk_size=8)
    assert all(np.array_equal(pipelined[f], alone[f]) for f in range(24))


def test_a_failed_segment_keeps_the_slice_decoded_before_it(monkeypatch, models_dir, motion_models):
    """The next segment's denoise is queued before the previous slice's frames are handed over; if it fails (out of
    memory, an interrupt), those frames still come out before the error, so the chunk's writer stores them."""
    import pytest

    from framefarm.animation.plan import plan_job
    from framefarm.errors import RenderError
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.kinds.animatediff import renderer
    from framefarm.renderers.diffusers.renderer import DiffusersRenderer

    job = ad_job(models_dir, "frames=24", "animatediff.segment_frames=8", "animatediff.segment_overlap=2")
    denoise = renderer._denoise

    def second_fails(setup, job, seg, context):
        if seg.start == 8:
            raise RenderError("out of memory (injected)")
        return denoise(setup, job, seg, context)

    monkeypatch.setattr(renderer, "vae_slice", lambda width, height: 4)
    monkeypatch.setattr(renderer, "_denoise", second_fails)
    renderer.clear_segment_cache()
    chunk = plan_job(job, renderer=DiffusersRenderer().id, chunk_size=24).chunks[0]
    got = []
    with pytest.raises(RenderError, match="injected"):
        for frame, image in renderer.render(chunk, list(chunk.frames), RenderContext.for_job(job)):
            got.append(frame)
    renderer.clear_segment_cache()
    assert got == list(range(8))  # both slices of the first segment, the second fetched only because of the error
