"""An AnimateDiff chunk is rendered pipelined one VAE slice deep: a slice's pixels are fetched only after the next
slice's decode (or the next segment's denoise) is queued, segment latents stay tensors on the model's device, and
the frames are those of a chunk of one segment. Tiny models on CPU, real renders."""

from __future__ import annotations

import numpy as np

from tests.renderers.animatediff.conftest import ad_job, render_clip


def _record_order(monkeypatch, events: list) -> None:
    """Log each slice's decode being queued, its pixels being fetched, and each segment's denoise (with the type of
    the latents it returned), in the order they happen."""
    from framefarm.renderers.diffusers.kinds.animatediff import renderer

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
        latents = denoise(setup, job, seg, context)
        events.append(("denoise", seg.start))
        events.append(("latents", type(latents)))
        return latents

    monkeypatch.setattr(renderer, "queue_decode", queued)
    monkeypatch.setattr(renderer, "_denoise", denoised)


def test_next_slice_is_queued_before_a_slice_is_fetched(monkeypatch, models_dir, motion_models):
    import torch

    from framefarm.renderers.diffusers.kinds.animatediff import renderer

    job = ad_job(models_dir, "frames=24", "animatediff.segment_frames=8", "animatediff.segment_overlap=2")
    monkeypatch.setattr(renderer, "vae_slice", lambda width, height: 4)  # two slices per 8-frame segment
    events: list = []
    with monkeypatch.context() as patch:
        _record_order(patch, events)
        pipelined = render_clip(job, chunk_size=24)
    kept = [kind for event, kind in events if event == "latents"]
    assert kept and all(kind is torch.Tensor for kind in kept)  # never copied to numpy
    events = [event for event in events if event[0] != "latents"]
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
    alone = render_clip(job, chunk_size=8)
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
