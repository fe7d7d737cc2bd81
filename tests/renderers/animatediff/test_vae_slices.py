"""AnimateDiff frames decode in VAE slices: slice-mates fixed by the job, pixels within PIXEL_TOLERANCE of
one frame per VAE call, and exact at slice size 1."""

from __future__ import annotations

import numpy as np

from framefarm.renderers.accel import PIXEL_TOLERANCE
from framefarm.renderers.diffusers.kinds.animatediff.renderer import decode_groups
from framefarm.renderers.diffusers.kinds.animatediff.windows import segments
from tests.renderers.animatediff.conftest import ad_job


def test_slices_stay_inside_a_segment_and_do_not_depend_on_which_frames_are_wanted():
    segs = segments(40, 16, 4, loop=True)  # owned ranges 0-15, 16-31, 32-39
    everything = decode_groups(range(40), segs, 6)
    assert everything == [list(range(0, 6)), list(range(6, 12)), list(range(12, 16)),
                          list(range(16, 22)), list(range(22, 28)), list(range(28, 32)),
                          list(range(32, 38)), list(range(38, 40))]
    # A resume that still misses frames 7 and 33 decodes the same whole slices those frames belong to.
    assert decode_groups([33, 7], segs, 6) == [list(range(6, 12)), list(range(32, 38))]
    assert decode_groups([], segs, 6) == []


def _frames(job, monkeypatch, slice_size: int | None, per_frame: bool = False) -> dict[int, np.ndarray]:
    from framefarm.animation.plan import plan_job
    from framefarm.renderers.diffusers import vae as vae_module
    from framefarm.renderers.diffusers.renderer import DiffusersRenderer
    from framefarm.renderers.diffusers.kinds.animatediff import renderer
    from framefarm.renderers.base import RenderContext

    with monkeypatch.context() as patch:
        if slice_size is not None:
            patch.setattr(renderer, "vae_slice", lambda width, height: slice_size)
        if per_frame:  # the renderer before VAE slices: decode_latents, one frame per call
            patch.setattr(renderer, "queue_decode", lambda vae, latents, frames, slice_size, lock: (
                vae_module.PendingFrames.ready({f: vae_module.decode_latents(vae, latents[k:k + 1], frame=f)
                                                for k, f in enumerate(frames)})))
        renderer.clear_segment_cache()
        plan = plan_job(job, renderer=DiffusersRenderer().id)
        return dict(renderer.render(plan.chunks[0], list(range(job.frames)), RenderContext.for_job(job)))


def test_sliced_decode_is_within_tolerance_and_exact_at_slice_size_one(models_dir, motion_models, monkeypatch):
    job = ad_job(models_dir, "frames=8")
    sliced = _frames(job, monkeypatch, None)  # 64×64: one slice holds all 8 frames
    one = _frames(job, monkeypatch, 1)
    before = _frames(job, monkeypatch, 1, per_frame=True)
    assert sorted(sliced) == sorted(one) == list(range(8))
    drift = max(int(np.abs(sliced[f].astype(int) - before[f].astype(int)).max()) for f in range(8))
    print(f"max abs pixel difference, AnimateDiff VAE slices vs one frame per call: {drift}")
    assert drift <= PIXEL_TOLERANCE
    assert all(np.array_equal(one[f], before[f]) for f in range(8))
