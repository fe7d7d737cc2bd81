"""AnimateDiff clips through the diffusers backend: a chunk of the plan is a run of whole segments.

For each requested frame the renderer finds the segments that render it (one, or two at a seam), denoises those
segments (each at most once per process: a chunk that needs its neighbour's render for a seam shares it with the
neighbour's own chunk when both run here), cross-fades their latents at the seam and decodes the frame. A segment's
latents depend on the job, the models and the segment's index only, so the frames are the same whichever chunking
or worker count renders them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from framefarm.animation.plan import ChunkSpec, canonical_hash
from framefarm.errors import InputError
from framefarm.renderers.base import RenderContext
from framefarm.renderers.diffusers.components import load_components
from framefarm.renderers.diffusers.conditioning import prompt_encoder, split_networks
from framefarm.renderers.diffusers.controls import fixed_image, unit_control_images
from framefarm.renderers.diffusers.kinds.animatediff.windows import Segment, owners, segments
from framefarm.renderers.diffusers.patches import Networks
from framefarm.renderers.diffusers.vae import PendingFrames, queue_decode, vae_slice

_setups: OrderedDict[str, Any] = OrderedDict()
_latents: OrderedDict[tuple[str, int], Any] = OrderedDict()
_segment_locks: dict[tuple[str, int], threading.Lock] = {}
_cache_lock = threading.Lock()
_MAX_SEGMENTS = 32
_TYPICAL_MODULE = {"SD1.5": "mm_sd_v15_v2", "SDXL": "mm_sdxl_v10_beta"}


def clear_segment_cache() -> None:
    """Forget every denoised segment of this process (tests render a clip afresh with it)."""
    with _cache_lock:
        _latents.clear()


def job_segments(job) -> list[Segment]:
    ad = job.animatediff
    return segments(job.frames, ad.segment_frames, ad.segment_overlap, loop=ad.loop)


def render(chunk: ChunkSpec, frames: Sequence[int], context: RenderContext) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame, RGB uint8)`` for the requested frames of an AnimateDiff chunk, in order.

    Pipelined one VAE slice deep: a slice's decode and the copy of its pixels are queued, then the next slice's work
    (decode, or the next segment's whole denoise) is queued before the host waits for those pixels. The host's
    set-up of a segment and the writing of the previous slice's frames so run while the GPU is busy, and a segment's
    latents never leave the device.
    """
    job = context.job
    wanted = sorted(set(frames))
    if not wanted:
        return
    setup = motion_setup(job)
    segs = job_segments(job)
    # Decoded in VAE slices (one frame per call left the GPU idle, and diffusers' own AnimateDiff pipeline
    # decodes 16 at a time). Which frames share a slice is fixed by the job alone (decode_groups), never by the
    # chunk or by which frames are still missing, so a frame's pixels don't depend on how the job was cut.
    pending, wanted_set = None, set(wanted)
    for group in decode_groups(wanted, segs, vae_slice(job.width, job.height)):
        try:
            queued = _queue_slice(setup, job, segs, group, context)
        except BaseException:
            # The next segment's denoise (or this slice's decode) failed; the slice before is decoded: keep its
            # frames (they are written before the error ends the chunk, so a retry does not render them again).
            if pending is not None:
                yield from _slice_frames(pending, wanted_set)
            raise
        if pending is not None:
            yield from _slice_frames(pending, wanted_set)
        pending = queued
    yield from _slice_frames(pending, wanted_set)


def _queue_slice(setup, job, segs: list[Segment], group: list[int], context: RenderContext) -> PendingFrames:
    """The slice's latents (cross-faded at a seam) on the device and its decode queued; nothing waited for."""
    import torch

    latents = torch.stack([
        sum(weight * _segment_latents(setup, job, seg, context)[seg.frames.index(frame)]
            for seg, weight in owners(frame, segs))
        for frame in group])
    with setup.base.lock:
        setup.components.select_compiled(setup.unet)
        return queue_decode(setup.vae, latents.to(setup.base.dtype), group, slice_size=len(group),
                            lock=setup.base.lock)


def _slice_frames(pending: PendingFrames, wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    """The slice's wanted frames, once its pixels are on the host (a slice is whole, so it may hold others)."""
    images = pending.result()
    for frame in pending.frames:
        if frame in wanted:
            yield frame, images[frame]


def decode_groups(wanted: Sequence[int], segs: list[Segment], slice_size: int) -> list[list[int]]:
    """The VAE slices holding ``wanted`` frames, whole: each segment's owned frames cut into runs of ``slice_size``
    from the segment's start. A slice lies within one segment, which one chunk renders, so every frame's slice-mates
    are the same however the job is chunked or resumed (batched convolutions round differently at other sizes)."""
    want, groups = set(wanted), []
    for seg in segs:
        for start in range(seg.start, seg.stop, slice_size):
            group = list(range(start, min(start + slice_size, seg.stop)))
            if want.intersection(group):
                groups.append(group)
    return groups


def clip_record(job) -> dict[str, Any]:
    """What a clip's pixels depend on besides the model files (whose hashes the manifest's ``models`` holds): for
    the manifest, so a clip can be re-rendered exactly and a person can see how it was made."""
    from framefarm.renderers.samplers import find_sampler

    ad, refs = job.animatediff, job.model
    sampler = find_sampler(refs.sampler)
    return {
        "seed": job.seed, "seed_behavior": job.seeds.behavior, "frames": job.frames,
        "context_length": ad.context_length, "context_overlap": ad.context_overlap,
        "context_weighting": ad.context_weighting, "loop": ad.loop, "motion_scale": ad.motion_scale,
        "motion_loras": [[lora.name, lora.weight] for lora in ad.motion_loras],
        "segments": [[s.start, s.stop, len(s.frames)] for s in job_segments(job)],
        "segment_overlap": ad.segment_overlap,
        "freeinit": [ad.freeinit_iterations, ad.freeinit_cutoff],
        "source_strength": ad.strength if job.source is not None else None,
        "scheduler": {"sampler": sampler.name, "class": sampler.scheduler, "overrides": dict(sampler.overrides),
                      "steps": refs.steps, "cfg_scale": refs.cfg_scale},
    }


# ---------------------------------------------------------------------------------------------------------------
# Models


def motion_setup(job):
    """The job's models (:func:`~framefarm.renderers.diffusers.components.load_components`) and its motion UNet
    (motion module, motion LoRAs, motion scale), cached per process. The motion UNet is derived from the base UNet
    through the base's patches, so a LoRA or hypernetwork of a later group reaches it as it reaches the base."""
    from framefarm.renderers.diffusers.kinds.animatediff.clip import MotionSetup, build_motion_unet
    from framefarm.renderers.models.hashing import sha256_of
    from framefarm.renderers.models.loader import read_state_dict
    from framefarm.renderers.models.motion import load_motion_adapter

    ad = job.animatediff
    components = load_components(job)
    base = components.base
    family = base.family
    if family != "SD1.5" and components.units:
        raise InputError("controlnet", f"{len(components.units)} unit(s)",
                         f"are not supported on {family} animatediff jobs yet (SD1.5 only)",
                         "Remove the controlnet units, or use an SD1.5 checkpoint and motion module")
    if not ad.motion_module:
        raise InputError("animatediff.motion_module", problem="is not set",
                         fix='Name a motion module of models/AnimateDiff, e.g. motion_module = "mm_sd_v15_v2"')
    library = components.library
    if library is None:
        raise InputError("animatediff.motion_module", ad.motion_module, "needs a models folder",
                         "Set model.models_dir to the folder holding models/AnimateDiff")
    entry = library.find("motion_module", ad.motion_module, field="animatediff.motion_module")
    if entry.base in ("SD1.5", "SDXL") and entry.base != family:
        raise InputError("animatediff.motion_module", ad.motion_module,
                         f"is an {entry.base} motion module but the checkpoint is {family}",
                         f"Use an {family} motion module ({_TYPICAL_MODULE[family]}) or an {entry.base} checkpoint")
    lora_entries = [(library.find("motion_module", lora.name, field="animatediff.motion_loras"), lora.weight)
                    for lora in ad.motion_loras]
    key = canonical_hash({"base": list(base.key), "module": sha256_of(entry.path),
                          "loras": [(sha256_of(e.path), w) for e, w in lora_entries],
                          "scale": ad.motion_scale, "vae": job.model.vae})
    with _cache_lock:
        # The motion UNet follows the patches of the base object it was derived from: a base loaded again (evicted
        # from the model cache in between) needs its own.
        if key in _setups and _setups[key].base is base:
            _setups.move_to_end(key)
            # The motion UNet is shared; the job's own ControlNets, models folder and VAE are not in the key.
            return dataclasses.replace(_setups[key], components=components, vae=components.vae)
    adapter, info = load_motion_adapter(entry, family, allow_pickle=job.model.allow_pickle)
    if ad.context_length > info.max_frames:
        raise InputError("animatediff.context_length", ad.context_length,
                         f"is longer than the motion module's {info.max_frames} frames",
                         f"Use context_length ≤ {info.max_frames} (16 is what the modules were trained on)")
    loras = [(e.name, read_state_dict(e, allow_pickle=job.model.allow_pickle), w) for e, w in lora_entries]
    with components.lock:
        unet = components.patches.derive_unet(lambda unet2d: build_motion_unet(
            unet2d, adapter, device=base.device, dtype=base.dtype, loras=loras, info=info,
            motion_scale=ad.motion_scale))
    setup = MotionSetup(base=base, unet=unet, vae=components.vae, info=info, key=key, components=components)
    with _cache_lock:
        _setups[key] = setup
        while len(_setups) > 1:  # a motion UNet is a full UNet copy: keep one
            _setups.popitem(last=False)
    return setup


# ---------------------------------------------------------------------------------------------------------------
# Segments


def _segment_latents(setup, job, seg: Segment, context: RenderContext):
    """The segment's final latents ``[F, C, h, w]``, float32 on the model's device: from the process cache, or
    denoised now (once per key, also when two chunk tasks of this process ask for it at the same time)."""
    key = (canonical_hash({"setup": setup.key, "job": job.model_dump(mode="json")}), seg.index)
    with _cache_lock:
        if key in _latents:
            return _latents[key]
        lock = _segment_locks.setdefault(key, threading.Lock())
    with lock:
        with _cache_lock:
            if key in _latents:
                return _latents[key]
        latents = _denoise(setup, job, seg, context)
        with _cache_lock:
            _latents[key] = latents
            while len(_latents) > _MAX_SEGMENTS:
                _latents.popitem(last=False)
            _segment_locks.pop(key, None)
    return latents


def clip_networks(job, positives: list[str], negatives: list[str]) -> tuple[list[str], list[str], Networks]:
    """The prompts without extra-network tags, and the one set of networks the clip renders with. A clip's frames
    are denoised together, so every frame must name the same LoRAs and hypernetworks (A1111's AnimateDiff applies a
    prompt's tags to the whole clip too)."""
    texts, untagged, found = [], [], {}
    for frame, (positive, negative) in enumerate(zip(positives, negatives)):
        positive, negative, networks = split_networks(positive, negative)
        texts.append(positive)
        untagged.append(negative)
        found.setdefault(networks, frame)
    if len(found) > 1:
        (first, a), (second, b) = list(found.items())[:2]
        raise InputError("prompts", f"frame {b}", f"names other LoRA/hypernetwork tags ({_tags(second)}) than frame "
                                                  f"{a} ({_tags(first)}); a motion clip's frames are denoised together "
                                                  "with one set of networks",
                         "Put the same <lora:…>/<hypernet:…> tags in every prompt of the clip (or in the global "
                         "positive_prompt)")
    return texts, untagged, next(iter(found))


def _tags(networks: Networks) -> str:
    tags = [f"<lora:{n}:{u:g}>" for n, _, u in networks.loras] + [f"<hypernet:{n}:{s:g}>" for n, s in networks.hypernets]
    return " ".join(tags) or "none"


def _denoise(setup, job, seg: Segment, context: RenderContext):
    from framefarm.renderers.diffusers.kinds.animatediff.clip import (
        clip_conditioning, denoise_segment,
    )
    from framefarm.renderers.diffusers.vae import encode_means
    from framefarm.renderers.samplers import make_scheduler

    ad, refs, components = job.animatediff, job.model, setup.components
    timeline = context.whole_job()  # the clip's prompts and seeds: the plan's, for every frame of the job
    texts, negatives, networks = clip_networks(job, list(timeline.prompts), list(timeline.negative_prompts))
    seeds = timeline.seeds
    whole_loop = ad.loop and len(seg.frames) == job.frames
    init = None
    if job.source is not None:  # video-to-video: the source frames, noised to ad.strength, are the start
        if context.source_frame is None:
            raise InputError("source.video", job.source.video, "was not prepared", "Render through the flow")
        with components.lock:
            components.select_compiled(setup.unet)
            init = encode_means(setup.vae, [context.source_frame(f) for f in seg.frames])
    controls = _controls(components, job, seg, context, seeds)
    with components.lock:
        components.select_compiled(setup.unet)
        components.patches.apply(components.library, networks, allow_pickle=refs.allow_pickle)
        encoder = prompt_encoder(components, texts + negatives, clip_skip=refs.clip_skip,
                                 allow_pickle=refs.allow_pickle)
        cond, uncond, pooled, pooled_uncond = clip_conditioning(encoder, texts, negatives, loop=ad.loop)
        latents = denoise_segment(
            setup, frames=list(seg.frames), seeds=[int(seeds[f]) for f in seg.frames], cond=cond, uncond=uncond,
            pooled=pooled, pooled_uncond=pooled_uncond,
            scheduler=make_scheduler(refs.sampler, setup.base.scheduler_config), steps=refs.steps,
            cfg=float(refs.cfg_scale), width=job.width, height=job.height, context_length=ad.context_length,
            context_overlap=ad.context_overlap, weighting=ad.context_weighting, loop_windows=whole_loop,
            init=init, strength=ad.strength, controls=controls, freeinit=ad.freeinit_iterations,
            freeinit_cutoff=ad.freeinit_cutoff)
    return latents  # float32, left on the device: its slices are decoded there


def _controls(components, job, seg: Segment, context: RenderContext, seeds) -> tuple:
    """ControlNet units with their control images for the segment's frames: from the source video (each frame
    through the unit's preprocessor, stored in the job's control cache) or the unit's fixed image. Weight schedules
    are not read: ``weight`` is."""
    import torch

    from framefarm.renderers.diffusers.kinds.animatediff.clip import ControlInput

    out = []
    for index, unit, model in components.units:
        fixed = fixed_image(job, index, unit)
        if fixed is None and (job.source is None or context.source_frame is None):
            raise InputError(f"controlnet.{index}.image", problem="is needed: this animatediff job has no source "
                                                                  "video to make control images from",
                             fix='Set source = { video = "clip.mp4" } or the unit\'s image')
        inputs = [(f, fixed if fixed is not None else context.source_frame(f), int(seeds[f])) for f in seg.frames]
        images = unit_control_images(components, index, unit, inputs, context.controls)
        tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255.0)
        out.append(ControlInput(model, tensor, float(unit.weight), unit.guidance_start, unit.guidance_end))
    return tuple(out)
