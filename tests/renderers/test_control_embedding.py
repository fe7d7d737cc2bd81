"""A ControlNet's conditioning embedding computed once per pipeline call (framefarm.renderers.diffusers.
control_embedding): the frame is diffusers' own ControlNet img2img frame, where the embedding is computed at every
step, and the embedding network really ran once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framefarm.renderers.diffusers import control_embedding

PROMPT, SEED, STEPS, CFG, STRENGTH, SCALE = "a lighthouse at dusk", 77, 4, 6.0, 0.75, 0.8


@pytest.fixture
def embeddings_computed(monkeypatch):
    """How often a ControlNet's conditioning embedding network actually ran (its first convolution), per call of
    ``ControlNetModel.forward``: the list grows by one entry per forward, True where the embedding was computed."""
    from diffusers import ControlNetModel

    calls: list[bool] = []
    forward = ControlNetModel.forward

    def counted(self, *args, **kwargs):
        ran = []
        handle = self.controlnet_cond_embedding.conv_in.register_forward_hook(lambda *_: ran.append(True))
        try:
            return forward(self, *args, **kwargs)
        finally:
            handle.remove()
            calls.append(bool(ran))

    monkeypatch.setattr(ControlNetModel, "forward", counted)
    return calls


def _control_frame(monkeypatch, models_dir):
    """Frame 0 through framefarm's group call with one ControlNet unit (tiny-canny), levers off; and its inputs."""
    from framefarm.renderers.diffusers.denoise import FrameSettings, Group
    from framefarm.renderers.preprocessors import PreprocessSettings, preprocess
    from framefarm.renderers.testcard import source_testcard
    from tests.renderers.jobs import group_frame, v2v_job

    init = source_testcard(0, 64, 64, 8)
    control = preprocess("canny", init, seed=SEED, settings=PreprocessSettings())
    job = v2v_job(models_dir, 'model.sampler="Euler"', frames=1, checkpoint="tiny-sd15-diffusers")
    group = Group(frames=[0], seeds=[SEED], positives=[PROMPT], negatives=[""], init=[init], controls={0: [control]},
                  settings=FrameSettings(strength=STRENGTH, cfg=CFG, steps=STEPS, sampler="Euler", clip_skip=1,
                                         control_weights=(SCALE,)))
    return group_frame(monkeypatch, job, group), init, control


def test_controlnet_img2img_frame_is_diffusers_own_with_the_embedding_computed_once(
        monkeypatch, models_dir, tiny_library, embeddings_computed):
    from PIL import Image

    from framefarm.renderers.accel import PIXEL_TOLERANCE
    from tests.renderers.jobs import diffusers_controlnet_img2img

    monkeypatch.setattr(control_embedding, "ENABLED", True)
    ours, init, control = _control_frame(monkeypatch, models_dir)
    steps_run = int(STEPS * STRENGTH)
    # One ControlNet forward per denoising step (CFG halves in one batch); the embedding network ran at the first.
    assert embeddings_computed == [True] + [False] * (steps_run - 1)

    # The reference: diffusers' own pipeline, the ControlNet built as the library's tiny-canny was (not loaded through
    # framefarm's converter), the embedding computed at every step.
    embeddings_computed.clear()
    pipe = diffusers_controlnet_img2img(tiny_library)
    theirs = np.asarray(pipe(PROMPT, negative_prompt="", image=Image.fromarray(init),
                             control_image=Image.fromarray(control), strength=STRENGTH, num_inference_steps=STEPS,
                             guidance_scale=CFG, controlnet_conditioning_scale=SCALE,
                             generator=torch.Generator("cpu").manual_seed(SEED)).images[0]).astype(int)
    assert embeddings_computed == [True] * steps_run
    diff = np.abs(ours.astype(int) - theirs)
    print(f"max |framefarm, embedding once − StableDiffusionControlNetImg2ImgPipeline| = {diff.max()}")
    assert ours.shape == (64, 64, 3) and diff.max() <= PIXEL_TOLERANCE


def test_the_embedding_once_gives_the_same_frame_as_at_every_step(monkeypatch, models_dir, embeddings_computed):
    monkeypatch.setattr(control_embedding, "ENABLED", True)
    once, _, _ = _control_frame(monkeypatch, models_dir)
    assert embeddings_computed.count(True) == 1 and len(embeddings_computed) > 1
    embeddings_computed.clear()
    monkeypatch.setattr(control_embedding, "ENABLED", False)
    every, _, _ = _control_frame(monkeypatch, models_dir)
    assert all(embeddings_computed)
    assert np.array_equal(once, every)


def test_scope_computes_once_per_image_and_leaves_no_patch_behind():
    """Each control-image tensor is embedded once inside the scope (two units may share one ControlNet model);
    outside it the class's forward runs at every call again."""
    from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding

    from tests.fixtures.tiny_models import build_controlnet, build_sd15

    unet, _, _ = build_sd15(seed=0)
    controlnet = build_controlnet(unet, seed=20)
    embedding = controlnet.controlnet_cond_embedding
    ran = []
    embedding.conv_in.register_forward_hook(lambda *_: ran.append(True))
    first, second = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad(), control_embedding.reused_control_embeddings([controlnet]):
        a, again = embedding(first), embedding(first)
        b = embedding(second)  # another image (a second unit using the same ControlNet file): computed once too
        assert embedding(first) is a and embedding(second) is b
    assert again is a and len(ran) == 2
    assert "forward" not in vars(embedding)  # the class's forward again after the call
    with torch.no_grad():
        assert torch.equal(b, ControlNetConditioningEmbedding.forward(embedding, second))
        embedding(first), embedding(first)
    assert len(ran) == 5  # outside the scope: computed at every call


def test_a_controlnet_compiled_whole_is_left_alone():
    from tests.fixtures.tiny_models import build_controlnet, build_sd15

    unet, _, _ = build_sd15(seed=0)
    controlnet = build_controlnet(unet, seed=20)
    controlnet._framefarm_compiled_as = ("model", "reduce-overhead")
    with control_embedding.reused_control_embeddings([controlnet]):
        assert "forward" not in vars(controlnet.controlnet_cond_embedding)
    controlnet._framefarm_compiled_as = ("blocks", None)
    with control_embedding.reused_control_embeddings([controlnet]):
        assert "forward" in vars(controlnet.controlnet_cond_embedding)
