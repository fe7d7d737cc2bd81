"""A looping, prompt-travelling 48-frame AnimateDiff clip through the Prefect flow, with tiny models on CPU."""

from __future__ import annotations

import numpy as np
import pytest

from framefarm.images import decode_png
from framefarm.storage import FrameStore
from tests.renderers.animatediff.conftest import ad_job

FRAMES = 48


def _frames(out: str, name: str) -> list[np.ndarray]:
    store = FrameStore(out, name)
    return [decode_png(store.read_frame_bytes(i)).astype(np.float64) for i in range(FRAMES)]


def _clear_segment_cache():
    from framefarm.renderers.diffusers.kinds.animatediff import renderer

    renderer.clear_segment_cache()


@pytest.mark.usefixtures("prefect_server")
def test_looping_travel_clip_same_frames_for_1_and_3_chunks_and_a_smooth_wrap(tmp_path, models_dir, motion_models):
    from framefarm.flows.render import render_job

    # One shared noise field (seeds.behavior = "fixed"): two steps of a tiny random motion module cannot make
    # independent per-frame noise coherent, so the frame-to-frame change measured below would be noise; with one
    # field it is what motion module, prompt travel and seams add, which is what the wrap is compared against.
    job = ad_job(models_dir, f"frames={FRAMES}", "animatediff.loop=true", "animatediff.segment_frames=16",
                 "animatediff.segment_overlap=4", 'prompts.16="a blue bird"', 'prompts.32="a green tree"',
                 "output.loop=true", "model.cfg_scale=1.0", 'seeds.behavior="fixed"')
    _clear_segment_cache()
    one = render_job(job, backend="diffusers", out=str(tmp_path / "one"), chunk_size=FRAMES)
    _clear_segment_cache()
    three = render_job(job, backend="diffusers", out=str(tmp_path / "three"), chunk_size=16)
    assert (one.rendered, len(one.chunks), len(three.chunks)) == (FRAMES, 1, 3)
    a, b = _frames(str(tmp_path / "one"), "ad"), _frames(str(tmp_path / "three"), "ad")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))

    # Motion, and a loop whose wrap (47 → 0) is no bigger a change than a typical step between frames.
    steps = [np.abs(a[i + 1] - a[i]).mean() for i in range(FRAMES - 1)]
    wrap = np.abs(a[0] - a[-1]).mean()
    print(f"frame-to-frame mean |Δ|: median {np.median(steps):.2f}, max {max(steps):.2f}; wrap {wrap:.2f}")
    assert np.median(steps) > 0.05
    assert wrap <= np.median(steps)

    # The manifest records what the clip depends on.
    manifest = FrameStore(str(tmp_path / "one"), "ad").read_json("manifest.json")
    assert {"animatediff.motion_module", "model.checkpoint"} <= set(manifest["models"])
    clip = manifest["animatediff"]
    assert (clip["frames"], clip["seed"], clip["context_length"], clip["loop"]) == (FRAMES, 7, 8, True)
    assert clip["segments"] == [[0, 16, 20], [16, 32, 20], [32, 48, 20]]
    assert clip["scheduler"]["class"] == "EulerDiscreteScheduler"


def test_a_worker_with_nothing_cached_renders_a_chunk_to_the_same_pixels(models_dir, motion_models):
    """Per-frame seeds ("iter"): chunk 1 rendered alone (as on another GPU) equals the whole clip's frames 8…15."""
    from framefarm.animation.plan import plan_job
    from framefarm.renderers.diffusers.kinds.animatediff.renderer import render as render_animatediff
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.renderer import DiffusersRenderer

    job = ad_job(models_dir, "frames=24", "animatediff.loop=true", "animatediff.segment_frames=8",
                 "animatediff.segment_overlap=3", 'prompts.12="a blue bird"', "model.cfg_scale=1.0")
    plan = plan_job(job, renderer=DiffusersRenderer().id, chunk_size=8)
    _clear_segment_cache()
    whole = {}
    for chunk in plan.chunks:
        whole.update(render_animatediff(chunk, list(chunk.frames), RenderContext.for_job(job)))
    _clear_segment_cache()
    alone = dict(render_animatediff(plan.chunks[1], list(range(8, 16)), RenderContext.for_job(job)))
    assert all(np.array_equal(alone[f], whole[f]) for f in range(8, 16))
    assert not np.array_equal(whole[8], whole[9])


@pytest.mark.usefixtures("prefect_server")
def test_video_to_video_starts_from_the_source_frames(tmp_path, models_dir, motion_models):
    from framefarm.flows.render import render_job

    def clip(name: str, *extra: str) -> list[np.ndarray]:
        job = ad_job(models_dir, f'name="{name}"', "frames=8", "model.cfg_scale=1.0", *extra)
        render_job(job, backend="diffusers", out=str(tmp_path), chunk_size=8)
        store = FrameStore(str(tmp_path), name)
        return [decode_png(store.read_frame_bytes(i)).astype(np.float64) for i in range(8)]

    def diff(a, b) -> float:
        return float(np.mean([np.abs(x - y).mean() for x, y in zip(a, b)]))

    text = clip("t2v")
    early = clip("v2v-a", 'source={video="testcard"}', "animatediff.strength=0.5")
    late = clip("v2v-b", 'source={video="testcard", start_frame=40}', "animatediff.strength=0.5")
    print(f"mean |Δ|: text vs video {diff(text, early):.2f}, two sources {diff(early, late):.2f}")
    assert diff(text, early) > 1.0 and diff(early, late) > 1.0


def test_controlnet_from_the_source_video_guides_the_clip(models_dir, motion_models):
    from framefarm.animation.plan import plan_job
    from framefarm.renderers.diffusers.kinds.animatediff import renderer
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.renderer import DiffusersRenderer
    from framefarm.renderers.testcard import source_testcard

    def clip(*extra: str) -> list[np.ndarray]:
        job = ad_job(models_dir, "frames=6", "model.cfg_scale=1.0", 'source={video="testcard"}',
                     "animatediff.strength=1.0", *extra)
        renderer.clear_segment_cache()
        plan = plan_job(job, renderer=DiffusersRenderer().id)
        source = lambda i: source_testcard(i, 64, 64, job.fps)  # noqa: E731 - what prepare_sources stores
        frames = dict(renderer.render(plan.chunks[0], range(6), RenderContext.for_job(job, source_frame=source)))
        return [frames[i].astype(np.float64) for i in range(6)]

    plain = clip()
    guided = clip('controlnet=[{model="tiny-canny", preprocessor="canny", weight=1.5}]')
    change = float(np.mean([np.abs(a - b).mean() for a, b in zip(plain, guided)]))
    print(f"ControlNet changes the clip by mean |Δ| {change:.2f}")
    assert change > 1.0


def test_wrapping_windows_close_the_loop_that_an_open_clip_leaves_open(models_dir, motion_models):
    from framefarm.animation.plan import plan_job
    from framefarm.renderers.diffusers.kinds.animatediff import renderer
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.renderer import DiffusersRenderer

    def wrap_and_steps(loop: bool) -> tuple[float, float]:
        job = ad_job(models_dir, f"frames={FRAMES}", f"animatediff.loop={str(loop).lower()}",
                     'prompts.16="a blue bird"', 'prompts.32="a green tree"', "model.cfg_scale=1.0",
                     'seeds.behavior="fixed"')
        _clear_segment_cache()
        plan = plan_job(job, renderer=DiffusersRenderer().id)
        frames = dict(renderer.render(plan.chunks[0], range(FRAMES), RenderContext.for_job(job)))
        a = [frames[i].astype(np.float64) for i in range(FRAMES)]
        return np.abs(a[0] - a[-1]).mean(), float(np.median([np.abs(a[i + 1] - a[i]).mean() for i in range(47)]))

    loop_wrap, loop_step = wrap_and_steps(True)
    open_wrap, _ = wrap_and_steps(False)
    print(f"wrap 47→0: loop {loop_wrap:.2f} (median step {loop_step:.2f}), open clip {open_wrap:.2f}")
    assert loop_wrap <= loop_step
    assert open_wrap > 3 * loop_wrap
