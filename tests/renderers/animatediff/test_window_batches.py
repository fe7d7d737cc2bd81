"""A segment's context windows of one step share UNet calls (a few at a time, fixed by the frame size): the clip
stays within the drift between batch sizes of one window per call, a clip's frames don't depend on how its job is
chunked, and the calls hold what the job fixes. Tiny models on CPU, real renders."""

from __future__ import annotations

import numpy as np

from framefarm.renderers.diffusers.kinds.animatediff import clip as clip_module
from tests.renderers.animatediff.conftest import ad_job, render_clip
from tests.renderers.test_diffusers_renderer import DRIFT_BOUND, max_diff


def test_windows_per_call_is_fixed_by_the_frame_size():
    assert clip_module.windows_per_call(512, 512) == 4
    assert clip_module.windows_per_call(768, 512) == 2
    assert clip_module.windows_per_call(1024, 1024) == 1
    assert clip_module._window_groups([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]], 2) == [
        [[0, 1], [1, 2]], [[2, 3], [3, 4]], [[4, 5]]]
    assert clip_module._window_groups([[0, 1, 2], [3, 4]], 4) == [[[0, 1, 2]], [[3, 4]]]  # equal lengths only


def test_batched_windows_stay_within_the_drift_of_one_window_per_call(monkeypatch, models_dir, motion_models):
    job = ad_job(models_dir, "frames=20", "animatediff.loop=true", 'prompts.10="a blue bird"')  # 4 windows a step
    calls: list[int] = []
    predict = clip_module._predict_windows

    def counted(unet, base, model_in, t, group, *args):
        calls.append(len(group))
        return predict(unet, base, model_in, t, group, *args)

    monkeypatch.setattr(clip_module, "_predict_windows", counted)
    batched = render_clip(job, chunk_size=20)
    assert calls and max(calls) > 1  # at 64², every window of a step shares one call
    monkeypatch.setattr(clip_module, "WINDOWS_PER_CALL_512", 0)  # one window per call
    calls.clear()
    single = render_clip(job, chunk_size=20)
    assert set(calls) == {1}
    drift = max_diff(batched, single)
    print(f"max abs pixel drift, batched windows vs one per call: {drift}")
    assert drift <= DRIFT_BOUND
    # The grouping is the job's: chunking the job never changes a pixel.
    monkeypatch.setattr(clip_module, "WINDOWS_PER_CALL_512", 4)
    assert all(np.array_equal(a, b) for a, b in zip(batched.values(), render_clip(job, chunk_size=4).values()))


def test_controlnet_images_follow_their_windows_in_a_batch(monkeypatch, models_dir, motion_models):
    """ControlNet residuals for a batch of windows (with CFG's two halves): each window gets its own frames'
    control images — batched and one window per call agree within the drift (a mix-up of windows would not)."""
    from framefarm.renderers.testcard import source_testcard

    job = ad_job(models_dir, "frames=20", 'source={video="testcard"}', "animatediff.strength=1.0",
                 'controlnet=[{model="tiny-canny", preprocessor="canny", weight=1.5}]')
    source = lambda i: source_testcard(i, 64, 64, job.fps)  # noqa: E731 - what prepare_sources stores
    batched = render_clip(job, chunk_size=20, source=source)
    monkeypatch.setattr(clip_module, "WINDOWS_PER_CALL_512", 0)
    single = render_clip(job, chunk_size=20, source=source)
    unguided = render_clip(ad_job(models_dir, "frames=20", 'source={video="testcard"}', "animatediff.strength=1.0"),
                       chunk_size=20, source=source)
    assert max_diff(batched, single) <= DRIFT_BOUND < max_diff(batched, unguided)


def test_animatediff_frames_carry_their_kinds_version(models_dir, motion_models):
    """Batched windows move pixels by rounding: AnimateDiff frames rendered before them get other keys (the other
    kinds' keys are untouched)."""
    from framefarm.job_inputs import input_hashes
    from framefarm.renderers.diffusers.renderer import KIND_VERSIONS
    from tests.renderers.jobs import v2v_job

    assert input_hashes(ad_job(models_dir), "diffusers")["renderer.kind"] == f"animatediff@{KIND_VERSIONS['animatediff']}"
    assert "renderer.kind" not in input_hashes(v2v_job(models_dir), "diffusers")
    assert "renderer.kind" not in input_hashes(ad_job(models_dir), "preview")
