"""video2video stages around the diffusion: stored control images (a rerun runs no preprocessor) and colour matching
to the source frame."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest

from framefarm.animation.plan import plan_job
from framefarm.animation.source_color import match_source_colors
from framefarm.renderers import get_renderer, preprocessors
from framefarm.renderers.testcard import source_testcard
from tests.renderers.jobs import v2v_job
from tests.renderers.test_diffusers_renderer import max_diff, render


@pytest.fixture()
def counted_canny(monkeypatch):
    """The real canny preprocessor, counting its calls (registered under its own name)."""
    calls = []
    real = preprocessors.BUILTIN["canny"]

    @functools.wraps(real)
    def canny(image, *, seed, settings):
        calls.append(seed)
        return real(image, seed=seed, settings=settings)

    monkeypatch.setitem(preprocessors.BUILTIN, "canny", canny)
    return calls


def _render_into_store(job, store) -> dict[int, bytes]:
    from framefarm.flows.chunk_work import render_chunk_frames

    plan = plan_job(job, renderer=get_renderer("diffusers").id, chunk_size=4)
    for chunk in plan.chunks:
        render_chunk_frames(chunk, job, "diffusers", store)
    return {i: store.read_frame_bytes(i) for i in range(job.frames)}


def test_control_images_are_stored_and_a_resume_runs_no_preprocessor(tmp_path, models_dir, counted_canny):
    from framefarm.flows.tasks import prepare_sources
    from framefarm.storage import FrameStore

    job = v2v_job(models_dir, 'controlnet.0.preprocessor="canny"', "controlnet.0.threshold_a=50")
    prepare_sources.fn(job, str(tmp_path))  # the task's own code, without Prefect
    store = FrameStore(str(tmp_path), job.name)
    first = _render_into_store(job, store)
    assert len(counted_canny) == job.frames  # once per frame
    stored = sorted((tmp_path / job.name / "control").rglob("*.png"))
    assert len(stored) == job.frames and len({p.parent for p in stored}) == 1  # one folder for the unit

    store.remove_frames(range(job.frames))  # a resume after losing every output frame
    counted_canny.clear()
    again = _render_into_store(job, store)
    assert counted_canny == []
    assert again == first  # byte-identical PNGs

    # Other preprocessor settings are another unit folder: computed again, not read from the old one.
    other = v2v_job(models_dir, 'controlnet.0.preprocessor="canny"', "controlnet.0.threshold_a=90")
    store.remove_frames(range(job.frames))
    _render_into_store(other, store)
    assert len(counted_canny) == job.frames
    assert len({p.parent for p in (tmp_path / job.name / "control").rglob("*.png")}) == 2


def test_colour_match_moves_lab_statistics_toward_the_source_and_is_deterministic():
    source = source_testcard(3, 64, 64, 8)
    # A "render" with a warm cast and less contrast than its source.
    rendered = np.clip(source.astype(int) * 0.8 + np.array([30, 10, 10]), 0, 255).astype(np.uint8)

    def stats(image):
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(float)
        return lab.mean(axis=0), lab.std(axis=0)

    (m_src, s_src), (m_out, s_out) = stats(source), stats(rendered)
    full = match_source_colors(rendered, source, 1.0)
    half = match_source_colors(rendered, source, 0.5)
    (m_full, s_full), (m_half, s_half) = stats(full), stats(half)
    gap = np.abs(m_out - m_src).sum() + np.abs(s_out - s_src).sum()
    gap_full = np.abs(m_full - m_src).sum() + np.abs(s_full - s_src).sum()
    gap_half = np.abs(m_half - m_src).sum() + np.abs(s_half - s_src).sum()
    # All the way: close to the source's (not exact: the saturated test card clips at the RGB gamut); half way: between.
    assert gap_full < 0.25 * gap < gap_half < 0.75 * gap
    assert np.array_equal(match_source_colors(rendered, source, 0.0), rendered)
    assert np.array_equal(full, match_source_colors(rendered.copy(), source.copy(), 1.0))


def test_colour_match_in_the_render_is_deterministic_and_keyed_only_when_on(models_dir):
    plain_job = v2v_job(models_dir, frames=4, controlnet=False)
    matched_job = v2v_job(models_dir, 'color_match="source"', frames=4, controlnet=False)
    renderer = get_renderer("diffusers").id
    plain_keys = plan_job(plain_job, renderer=renderer).frame_keys
    # Off, the fields are not in the job's dump, so frame keys are those of a job written before they existed.
    assert "color_match" not in plain_job.model_dump(mode="json")
    assert plan_job(v2v_job(models_dir, 'color_match="none"', frames=4, controlnet=False),
                    renderer=renderer).frame_keys == plain_keys
    assert set(plan_job(matched_job, renderer=renderer).frame_keys.values()).isdisjoint(plain_keys.values())

    plain, matched = render(plain_job), render(matched_job)
    assert max_diff(plain, matched) > 0
    again = render(matched_job)
    assert all(np.array_equal(matched[i], again[i]) for i in matched)
    for i in matched:  # each frame's LAB mean is closer to its source's than without matching
        source = cv2.cvtColor(source_testcard(i, 64, 64, 8), cv2.COLOR_RGB2LAB).reshape(-1, 3).mean(axis=0)
        gap = {name: np.abs(cv2.cvtColor(frames[i], cv2.COLOR_RGB2LAB).reshape(-1, 3).mean(axis=0) - source).sum()
               for name, frames in (("plain", plain), ("matched", matched))}
        assert gap["matched"] < gap["plain"]


def test_gpu_batch_size_follows_free_memory_and_a_measured_figure(models_dir, monkeypatch):
    # No GPU on the CPU suite: this is the GPU branch's arithmetic, given the free memory a GPU would report.
    from framefarm.renderers.batch_size import BYTES_PER_FRAME_ENV, gpu_choice

    gib = 2**30
    job = v2v_job(models_dir, 'batch_size="auto"', "width=512", "height=512")
    big, small = gpu_choice(job, 140 * gib), gpu_choice(job, 6 * gib)
    assert big.device == "cuda" and big.fixed_bytes > 0 and big.bytes_per_frame > 0
    assert 1 <= small.batch_size < big.batch_size <= 256
    assert gpu_choice(job, 1 * gib).batch_size == 1  # never below one frame
    monkeypatch.setenv(BYTES_PER_FRAME_ENV, str(gib))
    measured = gpu_choice(job, 40 * gib)
    assert measured.bytes_per_frame == gib
    assert measured.batch_size == (int(40 * gib * 0.85) - measured.fixed_bytes) // gib


def test_the_next_batch_inputs_are_made_on_a_helper_thread_with_the_same_pixels(models_dir, monkeypatch):
    """video2video makes batch n+1's source frames and control images on a helper thread while batch n denoises
    (an H200 otherwise idles through the CPU's Canny): the frames are those of one batch per chunk."""
    import threading

    real = preprocessors.BUILTIN["canny"]
    threads = []

    def canny(image, *, seed, settings):
        threads.append(threading.current_thread().name)
        return real(image, seed=seed, settings=settings)

    monkeypatch.setitem(preprocessors.BUILTIN, "canny", canny)
    job = v2v_job(models_dir, 'controlnet.0.preprocessor="canny"', frames=12)  # batch size 4: 3 batches
    three_batches = render(job, chunk_size=12)
    # Off the rendering thread: on the helper, or on the control-image threads it starts.
    assert len(threads) == 12 and all(name.startswith(("batch-inputs", "control-images")) for name in threads)
    one_batch_each = render(job, chunk_size=4)  # prefetch has nothing to overlap with here
    assert all(np.array_equal(three_batches[i], one_batch_each[i]) for i in range(12))


def test_weight_free_control_images_are_made_on_threads_as_on_one(tmp_path, monkeypatch):
    """A batch's control images come from several threads at once (the GPU waits for them at a chunk's start): the
    same images, and the same stored PNGs, as one frame after another."""
    import threading

    from framefarm.renderers import control_cache
    from framefarm.renderers.preprocessors import PreprocessSettings
    from framefarm.storage import FrameStore

    threads = set()
    real = preprocessors.BUILTIN["shuffle"]  # seeded: a frame's image must come with its own seed

    def shuffle(image, *, seed, settings):
        threads.add(threading.current_thread().name)
        return real(image, seed=seed, settings=settings)

    monkeypatch.setitem(preprocessors.BUILTIN, "shuffle", shuffle)
    inputs = [(f, source_testcard(f, 96, 64, 12), 1000 + f) for f in range(12)]
    made = {}
    for count in (1, 4):
        monkeypatch.setattr(control_cache, "PREPROCESS_THREADS", count)
        store = control_cache.ControlStore(FrameStore(str(tmp_path / f"threads{count}"), "job"))
        images = control_cache.control_images(store, "shuffle", inputs, settings=PreprocessSettings())
        files = {p.relative_to(tmp_path / f"threads{count}"): p.read_bytes()
                 for p in (tmp_path / f"threads{count}").rglob("*.png")}
        made[count] = images, files
    assert all(np.array_equal(a, b) for a, b in zip(made[1][0], made[4][0])) and len(made[4][0]) == 12
    assert made[1][1] == made[4][1] and len(made[4][1]) == 12
    assert any(name.startswith("control-images") for name in threads)
    assert [preprocessors.BUILTIN["shuffle"](image, seed=seed, settings=PreprocessSettings()).tobytes()
            for _, image, seed in inputs] == [image.tobytes() for image in made[4][0]]


def test_only_the_built_in_weight_free_preprocessors_run_on_threads(monkeypatch):
    assert all(preprocessors.thread_safe(n) for n in ("canny", "Canny", "none", "identity", "shuffle"))
    assert not any(preprocessors.thread_safe(n) for n in ("depth", "openpose", "softedge"))  # torch models
    # A plug-in registered under a built-in's name is code framefarm does not know: one frame at a time.
    table = {**preprocessors.BUILTIN, "canny": lambda image, *, seed, settings: image}
    monkeypatch.setattr(preprocessors, "available", lambda: table)
    assert not preprocessors.thread_safe("canny")


def test_whole_batches_reach_the_gpu_stacked_on_the_helper_thread_with_the_same_pixels(models_dir, monkeypatch):
    """A group holding its whole batch gets its source frames and control images stacked (pinned, on a GPU) on the
    helper thread, so the thread launching the GPU's work only queues the copies: the same pixels as frames stacked
    where they are used."""
    import threading

    from framefarm.renderers.diffusers import denoise, vae
    from framefarm.renderers.diffusers.kinds import video2video

    staged_on, used = [], []
    real_init, real_to_tensor = vae.StagedFrames.__init__, vae.to_tensor

    def staging(self, images):
        staged_on.append(threading.current_thread().name)
        real_init(self, images)

    def to_tensor(images, device=None):
        used.append(type(images).__name__)
        return real_to_tensor(images, device)

    monkeypatch.setattr(vae.StagedFrames, "__init__", staging)
    monkeypatch.setattr(vae, "to_tensor", to_tensor)  # encode_sources' source frames
    monkeypatch.setattr(denoise, "to_tensor", to_tensor)  # the control images
    job = v2v_job(models_dir, 'controlnet.0.preprocessor="canny"', frames=8)  # batch size 4: 2 batches
    staged = render(job, chunk_size=8)
    # Two batches, each its sources and its one unit's control images: stacked on the helper, used stacked.
    assert len(staged_on) == 4 and all(name.startswith("batch-inputs") for name in staged_on)
    assert used == ["StagedFrames"] * 4

    used.clear()
    monkeypatch.setattr(video2video, "StagedFrames", list)  # batch inputs as plain lists, stacked where used
    plain = render(job, chunk_size=8)
    assert used == ["list"] * 4
    assert sorted(staged) == sorted(plain) == list(range(8))
    assert all(np.array_equal(staged[i], plain[i]) for i in range(8))


def test_a_rendered_video2video_frame_is_diffusers_own_controlnet_img2img_frame(models_dir, tiny_library, monkeypatch):
    """The whole video2video path (batch inputs and stacked frames from the helper thread, the group call, the
    ControlNet embedding once per call) against diffusers' StableDiffusionControlNetImg2ImgPipeline on the same
    folder, with each frame's seed, prompt, strength, source frame and Canny image as the plan and the unit give
    them: the same frames."""
    import torch
    from PIL import Image

    from framefarm.renderers.accel import ACCEL_ENV, PIXEL_TOLERANCE
    from framefarm.renderers.models.loader import clear_cache
    from framefarm.renderers.preprocessors import PreprocessSettings, preprocess
    from tests.renderers.jobs import diffusers_controlnet_img2img

    monkeypatch.setenv(ACCEL_ENV, "none")
    clear_cache()
    job = v2v_job(models_dir, 'model.sampler="Euler"', "model.steps=4", "batch_size=1", 'negative_prompt="photo"',
                  frames=2, checkpoint="tiny-sd15-diffusers")
    try:
        ours = render(job, chunk_size=2)
    finally:
        clear_cache()
    (chunk,) = plan_job(job, renderer=get_renderer("diffusers").id, chunk_size=2).chunks
    unit = job.controlnet[0]

    pipe = diffusers_controlnet_img2img(tiny_library)
    for frame in range(2):
        source = source_testcard(frame, job.width, job.height, job.fps)
        control = preprocess(unit.preprocessor, source, seed=chunk.seeds[frame],
                             settings=PreprocessSettings(threshold_a=unit.threshold_a, threshold_b=unit.threshold_b))
        theirs = np.asarray(pipe(chunk.prompts[frame], negative_prompt=chunk.negative_prompts[frame],
                                 image=Image.fromarray(source), control_image=Image.fromarray(control),
                                 strength=float(chunk.values["strength"][frame]), num_inference_steps=job.model.steps,
                                 guidance_scale=job.model.cfg_scale, controlnet_conditioning_scale=unit.weight,
                                 generator=torch.Generator("cpu").manual_seed(chunk.seeds[frame])).images[0])
        diff = int(np.abs(ours[frame].astype(int) - theirs.astype(int)).max())
        print(f"frame {frame}: max |framefarm video2video − StableDiffusionControlNetImg2ImgPipeline| = {diff}")
        assert ours[frame].shape == theirs.shape and diff <= PIXEL_TOLERANCE
