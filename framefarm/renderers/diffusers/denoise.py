"""The one txt2img / img2img group call every image kind shares: a group of frames with equal settings through
diffusers' own SD1.5 / SDXL pipelines (with ControlNet), latents out, decoded in VAE slices.

What a kind hands in (:class:`Group`): the frames, each frame's seed, prompts, start image (img2img) and control
images, and the settings they share (:class:`FrameSettings`). What happens here, always in this order:

1. the group's LoRAs / hypernetworks are made the models' only patches (:class:`~.patches.ModelPatches`);
2. prompts → conditioning (A1111 weights, embeddings, clip skip);
3. the pipeline call, each frame's noise (and img2img's VAE sample, and ancestral samplers' step noise) drawn from
   its own CPU generator seeded with the frame's seed — so a frame's pixels do not depend on its group-mates' seeds;
   each ControlNet's conditioning embedding computed at the first step only (:mod:`.control_embedding`);
4. decode in slices; the pixels come to the host when the kind asks for them (:class:`~.vae.PendingFrames`).

Batched matmuls are not bit-identical across batch sizes, so *which* frames form a group is the kind's decision and
must be fixed by the job alone (video2video: the global batch index; the Deforum chain: one frame of one chain).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framefarm.renderers.diffusers.conditioning import encode_pairs
from framefarm.renderers.diffusers.control_embedding import reused_control_embeddings
from framefarm.renderers.diffusers.controls import control_scales
from framefarm.renderers.diffusers.host_noise import pinned_noise
from framefarm.renderers.diffusers.patches import NO_NETWORKS, Networks
from framefarm.renderers.diffusers.vae import PendingFrames, encode_sources, queue_decode, to_tensor, vae_slice
from framefarm.renderers.host_copies import sync_free_schedule


@dataclass(frozen=True)
class FrameSettings:
    """What a frame's pixels depend on besides its seed, start image, control images and prompt text. Frames with
    equal settings in a batch are rendered by one pipeline call.

    Attributes:
        strength: img2img denoising strength (0 keeps the start image, 1 repaints it; 1 for txt2img).
        cfg: classifier-free guidance scale.
        steps: sampler steps (img2img runs the last ``strength`` of them, as diffusers does).
        sampler: an A1111 sampler name (:mod:`framefarm.renderers.samplers`).
        clip_skip: A1111's clip skip (1 = the text encoder's last layer).
        control_weights: each ControlNet unit's weight, by unit index (0 switches a unit off for these frames).
        networks: the ``<lora:…>`` / ``<hypernet:…>`` tags of the frames' prompts.
    """

    strength: float
    cfg: float
    steps: int
    sampler: str
    clip_skip: int
    control_weights: tuple[float, ...] = ()
    networks: Networks = NO_NETWORKS


@dataclass
class Group:
    """Frames rendered by one pipeline call.

    Attributes:
        frames: frame numbers (the keys of the result).
        seeds: each frame's seed.
        positives, negatives: each frame's prompts, without extra-network tags.
        settings: what the frames share.
        init: img2img: each frame's RGB uint8 start image; ``None``: txt2img.
        controls: unit index → each frame's RGB uint8 control image (units with weight 0 may be left out).
    """

    frames: list[int]
    seeds: list[int]
    positives: list[str]
    negatives: list[str]
    settings: FrameSettings
    init: list[np.ndarray] | None = None
    controls: dict[int, list[np.ndarray]] = field(default_factory=dict)


def denoise_group(components, job, group: Group) -> dict[int, np.ndarray | PendingFrames]:
    """Render ``group``: frame → pixels, or the :class:`PendingFrames` that will hold them
    (:func:`~framefarm.renderers.diffusers.vae.resolve` waits)."""
    import torch

    from framefarm.renderers.diffusers import sd15, sdxl
    from framefarm.renderers.models.detect import SDXL
    from framefarm.renderers.samplers import make_scheduler

    settings, base, refs = group.settings, components.base, job.model
    if group.init is not None and int(settings.steps * settings.strength) < 1:
        return dict(zip(group.frames, group.init))  # no denoising step at this strength: a frame is its start
    active = [(i, unit, model) for i, unit, model in components.units if settings.control_weights[i] > 0]
    controls = [to_tensor(group.controls[i], device=components.vae.device) for i, _, _ in active]
    generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in group.seeds]
    family = sdxl if base.family == SDXL else sd15
    slice_size = vae_slice(job.width, job.height)
    with components.lock:
        components.select_compiled()
        components.patches.apply(components.library, settings.networks, allow_pickle=refs.allow_pickle)
        positives, negatives = encode_pairs(components, group.positives, group.negatives,
                                            clip_skip=settings.clip_skip, allow_pickle=refs.allow_pickle)
        scheduler = sync_free_schedule(make_scheduler(settings.sampler, base.scheduler_config))
        pipe = family.build_pipeline(base, img2img=group.init is not None, controlnets=[m for _, _, m in active],
                                     vae=components.vae, scheduler=scheduler)
        call: dict[str, Any] = dict(num_inference_steps=settings.steps, guidance_scale=settings.cfg,
                                    generator=generators, output_type="latent",
                                    **family.conditioning_kwargs(positives, negatives))
        if active:
            call.update(control_scales(settings.control_weights, active), height=job.height, width=job.width)
        # The seeded CPU noise reaches the GPU without a stream sync per step; each ControlNet embeds its control
        # images once per call, not once per step.
        with pinned_noise(), reused_control_embeddings(m for _, _, m in active):
            if group.init is None:
                init = None
            elif base.family == SDXL:  # diffusers' SDXL encode (float32 upcast, latents mean/std): left to it
                init = to_tensor(group.init)
            else:  # SD1.5: encoded here in slices (diffusers encodes a generator list one frame per call)
                init = encode_sources(components.vae, group.init, generators, slice_size=slice_size)
            call.update(image_kwargs(job, init, settings.strength, controls))
            with torch.inference_mode():
                latents = pipe(**call).images
        decoded = queue_decode(components.vae, latents, group.frames, slice_size=slice_size, lock=base.lock)
    return {frame: decoded for frame in group.frames}


def image_kwargs(job, init, strength: float, controls: list) -> dict[str, Any]:
    """The pipeline's image arguments: img2img's ``image`` (pixels or latents) and ``strength``, with the control
    images as ``control_image``; or, with no ``init``, txt2img's frame size with the control images as ``image``."""
    if init is not None:
        return dict(image=init, strength=strength, **({"control_image": controls} if controls else {}))
    return dict(height=job.height, width=job.width, **({"image": controls} if controls else {}))
