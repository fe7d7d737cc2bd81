"""The diffusers renderer called directly (no flow): batching, seed lock, drift, LoRA restore, numerical safety."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framefarm.animation.plan import plan_job
from framefarm.errors import InputError, RenderError
from framefarm.renderers import get_renderer
from framefarm.renderers.base import RenderContext
from framefarm.renderers.testcard import source_testcard
from tests.renderers.jobs import v2v_job

# The measured figure docs/models.md states: max |pixel difference| between batch sizes 1 and 4, tiny SD1.5 on CPU.
DRIFT_BOUND = 8


def render(job, *, chunk_size: int = 8, only=None) -> dict[int, np.ndarray]:
    renderer = get_renderer("diffusers")
    plan = plan_job(job, renderer=renderer.id, chunk_size=chunk_size)
    context = RenderContext.for_job(job, source_frame=lambda i: source_testcard(i, job.width, job.height, job.fps))
    frames = {}
    for chunk in plan.chunks:
        wanted = [f for f in chunk.frames if only is None or f in only]
        frames.update(dict(renderer.render(chunk, wanted, context)))
    return frames


def max_diff(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> int:
    return max(int(np.abs(a[i].astype(int) - b[i].astype(int)).max()) for i in a)


def test_drift_between_batch_sizes_1_and_4_is_small_and_measured(models_dir):
    four = render(v2v_job(models_dir))
    one = render(v2v_job(models_dir, "batch_size=1"))
    drift = max_diff(four, one)
    print(f"max abs pixel drift, batch size 1 vs 4: {drift}")
    assert drift <= DRIFT_BOUND
    again = render(v2v_job(models_dir))
    assert all(np.array_equal(four[i], again[i]) for i in four)  # and a rerun is bit-identical


def test_a_partly_done_batch_is_rendered_whole_and_gives_the_same_pixels(models_dir):
    job = v2v_job(models_dir)
    full = render(job)
    partial = render(job, only={2, 5})
    assert sorted(partial) == [2, 5]
    assert all(np.array_equal(partial[i], full[i]) for i in partial)


def test_lora_changes_pixels_and_is_restored_exactly(models_dir):
    plain = render(v2v_job(models_dir, frames=4))
    with_lora = render(v2v_job(models_dir, 'prompts.0="a watercolor cat <lora:tinylora:1.0>"', frames=4))
    assert max_diff(plain, with_lora) > 0
    again = render(v2v_job(models_dir, frames=4))
    assert all(np.array_equal(plain[i], again[i]) for i in plain)


def test_unknown_lora_and_hypernetwork_tags_are_input_errors(models_dir):
    with pytest.raises(InputError, match="is not a lora"):
        render(v2v_job(models_dir, 'prompts.0="a cat <lora:missing:1>"', frames=4))
    with pytest.raises(InputError, match="is not a hypernetwork"):
        render(v2v_job(models_dir, 'prompts.0="a cat <hypernet:h:1>"', frames=4))


def test_vae_override_strength_zero_and_txt2img(models_dir):
    plain = render(v2v_job(models_dir, frames=4))
    other_vae = render(v2v_job(models_dir, 'model.vae="tiny-vae"', frames=4))
    assert max_diff(plain, other_vae) > 0
    untouched = render(v2v_job(models_dir, 'motion.strength="0:(0)"', frames=4))
    assert np.array_equal(untouched[1], source_testcard(1, 64, 64, 8.0))
    from framefarm.job import job_from_preset

    deforum = job_from_preset("zoom-tunnel", [f'model.models_dir="{models_dir}"', 'model.checkpoint="tiny-sd15"',
                                              "model.steps=2", "width=64", "height=64", "frames=2"])
    frames = render(deforum)
    assert sorted(frames) == [0, 1] and frames[0].shape == (64, 64, 3)


def test_models_that_cannot_be_used_are_input_errors(models_dir, tiny_library):
    damaged = r"model.checkpoint: is damaged: not a valid \.safetensors file.*broken\.safetensors"
    with pytest.raises(InputError, match=damaged):
        render(v2v_job(models_dir, checkpoint="broken", frames=4))
    with pytest.raises(InputError, match=r"is refused: pickle.*legacy\.ckpt"):
        render(v2v_job(models_dir, checkpoint="legacy", frames=4))
    with pytest.raises(InputError, match="framefarm never downloads"):
        render(v2v_job(models_dir, checkpoint="someone/not-cached", frames=4))
    with pytest.raises(InputError, match="is an SDXL ControlNet|is an SD1.5 ControlNet"):
        render(v2v_job(models_dir, checkpoint="tiny-sdxl", frames=4))
    assert not tiny_library.pickle_marker.exists()


def test_nan_frames_are_decoded_again_in_float32(tiny_library):
    from framefarm.renderers.diffusers.vae import decode_latents
    from framefarm.renderers.models.library import ModelLibrary
    from framefarm.renderers.models.loader import load_vae, load_base

    library = ModelLibrary.scan(tiny_library.root)
    base = load_base(library.find("checkpoint", "tiny-sd15", field="f"))
    vae = load_vae(library.find("vae", "tiny-vae", field="f"), base)
    half = type(vae).from_config(vae.config).to(torch.float16)
    # The cached VAE may carry fused QKV copies (framefarm.renderers.accel): only the plain weights are copied.
    plain = half.state_dict()
    half.load_state_dict({k: v.half() for k, v in vae.state_dict().items() if k in plain})
    latents = torch.full((1, 4, 8, 8), 3e4)  # overflows float16 inside the decoder
    image = decode_latents(half, latents, frame=0)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and image.max() > 0
    assert half.dtype == torch.float16  # back to its own precision afterwards
    with pytest.raises(RenderError, match="NaN even with the VAE in float32"):
        decode_latents(vae, torch.full((1, 4, 8, 8), float("nan")), frame=3)
