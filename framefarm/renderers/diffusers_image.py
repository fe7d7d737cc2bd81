"""The diffusers image renderer: SD1.5 / SDXL txt2img and img2img with ControlNet, LoRA, embeddings, offline.

What each job kind gets:

* ``video2video``: every source frame is img2img'd at the frame's ``strength`` (the denoising strength: 0 keeps
  the source, 1 repaints it — the same meaning the preview renderer gives it), guided by 0…N ControlNet units whose
  control images come from the unit's preprocessor applied to that source frame (or the unit's fixed ``image``).
* ``deforum``: the Deforum chain (img2img of the warped previous frame), in :mod:`framefarm.renderers.deforum_chain`.
* ``animatediff``: motion clips, handed to :mod:`framefarm.renderers.animatediff` (docs/animatediff.md).

Seed lock and batching (why frames are byte-identical across chunkings and workers):

1. Each frame's noise comes from its own CPU generator, ``torch.Generator("cpu").manual_seed(seed)``, fresh per
   frame; diffusers draws each batch item's noise (and img2img's VAE sample, and ancestral samplers' step noise)
   from that item's generator.
2. Batched matmuls are not bit-identical across batch sizes, so which frames share a batch is fixed by the global
   frame index: batch ``b`` is frames ``b·B … b·B+B−1`` (``B`` = ``job.batch_size``). A chunk always renders its
   batches whole — also when only some of their frames are still missing — and yields only the requested frames.
3. Within a batch, frames whose per-frame settings differ (strength, CFG, ControlNet weights, LoRA tags) are run as
   separate groups — again fixed by the batch's frames alone. Prompts are encoded one by one; the VAE encodes and
   decodes a group in slices of :func:`vae_slice` frames (a fixed size per image size, so a frame's slice-mates are
   again fixed by its batch), which is what keeps the GPU busy (issue 9: one frame at a time left it idle between
   hundreds of small launches and a device sync per frame).

Numerical safety: a frame that decodes to NaN or to all black (the fp16 VAE overflow of SDXL) is decoded again, alone,
with the VAE in float32; if that fails too the render stops with an error rather than storing a broken frame. The
check runs on the GPU for a whole group and costs one device sync per group, not several per frame.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version as package_version
from pathlib import Path
from typing import Any

import numpy as np

from framefarm.animation.plan import ChunkSpec
from framefarm.animation.source_color import color_match_frame
from framefarm.errors import InputError, RenderError
from framefarm.renderers import accel
from framefarm.renderers.base import RenderContext
from framefarm.renderers.oom import render_halving_on_oom

RENDERER_VERSION = "3"  # 2: deforum jobs render as a chain (frames differ from 1's txt2img stand-in);
#                        3: animatediff frames decode in VAE slices (within PIXEL_TOLERANCE of 2's)


def _renderer_version() -> str:
    # The library versions are part of the renderer's version (and so of every frame key): a diffusers or torch
    # upgrade can change pixels, and a resumed render must not mix frames from two versions.
    parts = [RENDERER_VERSION]
    for package in ("diffusers", "torch"):
        try:
            parts.append(f"{package}={package_version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package}=?")
    parts.append(accel.version_tag())  # speed levers that may move a pixel by rounding (issue 9)
    return ";".join(parts)


@dataclass(frozen=True)
class FrameSettings:
    """What a frame's pixels depend on besides its seed, source and prompt text. Frames with equal settings in a
    batch are rendered by one pipeline call."""

    strength: float
    cfg: float
    control_weights: tuple[float, ...]
    loras: tuple[tuple[str, float, float], ...]
    hypernets: tuple[tuple[str, float], ...] = ()  # (name, strength) of <hypernet:…> tags, in prompt order


@dataclass
class _Setup:
    """The loaded models for one chunk (all from the process caches)."""

    library: Any
    base: Any
    vae: Any
    units: list[tuple[int, Any, Any]]  # (unit index, ControlNetUnit, ControlNetModel), inactive units left out
    annotators: Path | None


class DiffusersRenderer:
    """Stable Diffusion 1.5 / SDXL through diffusers, from the user's own model files, never the hub."""

    name = "diffusers"
    version = _renderer_version()
    # Deforum frames are img2img of the previous frame: the flow runs a chained job's chunks in order.
    reads_previous_frames = True

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, chunk: ChunkSpec, frames: Sequence[int], context: RenderContext
               ) -> Iterator[tuple[int, np.ndarray]]:
        job = context.job
        wanted = sorted(set(frames))
        if not wanted:
            return
        if job.kind == "deforum":
            from framefarm.renderers.deforum_chain import render_deforum

            yield from render_deforum(chunk, wanted, context)
            return
        if job.kind == "animatediff":  # motion clips: framefarm/renderers/animatediff
            from framefarm.renderers.animatediff.renderer import render_animatediff

            yield from render_animatediff(chunk, wanted, context)
            return
        setup = _setup(job)
        if job.kind == "video2video":
            if context.source_frame is None:
                raise RenderError("video2video needs the prepared source frames")
            size = job.batch_size
            batches = []
            for batch in sorted({f // size for f in wanted}):
                members = list(range(batch * size, min((batch + 1) * size, job.frames)))
                outside = [f for f in members if not chunk.start <= f < chunk.stop]
                if outside:
                    raise RenderError(f"chunk {chunk.index} ({chunk.start}…{chunk.stop - 1}) does not hold all of "
                                      f"batch {batch} (frames {members[0]}…{members[-1]}); chunks must be whole "
                                      f"batches of {size}")
                batches.append(members)
            # The next batch's source frames and control images (PNG decode, Canny: CPU work that releases the GIL)
            # are made on a helper thread while this batch denoises: on an H200 they were 9 % of a batch's wall
            # time with the GPU idle (benchmarks/results/gpu/README.md). Same inputs, same pixels.
            # Each batch's pixels are fetched from the GPU only after the next batch's work is queued behind them
            # (PendingFrames): the host's work between two batches (handing frames to the writers, the next batch's
            # settings, prompts, pipeline) then overlaps the GPU's decode instead of leaving the GPU idle.
            def finish(members, images, prepared):
                images = _resolve(images)
                for frame in members:
                    if frame in wanted:  # colour match to the source, when asked (animation/source_color.py)
                        yield frame, color_match_frame(job, images[frame], frame, prepared.sources.__getitem__)

            pending = None
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-inputs") as helper:
                upcoming = helper.submit(_batch_inputs, setup, job, chunk, batches[0], context)
                for n, members in enumerate(batches):
                    prepared = upcoming.result()
                    if n + 1 < len(batches):
                        upcoming = helper.submit(_batch_inputs, setup, job, chunk, batches[n + 1], context)
                    try:
                        images = _render_batch(setup, job, chunk, members, context, prepared)
                    except BaseException:
                        if pending is not None:  # the previous batch is finished: keep its frames
                            yield from finish(*pending)
                        raise
                    if pending is not None:
                        yield from finish(*pending)
                    pending = (members, images, prepared)
                if pending is not None:
                    yield from finish(*pending)
        else:
            for frame in wanted:  # no batch size on these kinds: one frame per call
                yield frame, _resolve(_render_batch(setup, job, chunk, [frame], context))[frame]


# ---------------------------------------------------------------------------------------------------------------
# Setup: models for the job, from the process caches


def _setup(job) -> _Setup:
    from framefarm.renderers.models.library import entry_for_path, open_library, require_usable
    from framefarm.renderers.models.loader import load_base, load_controlnet, load_vae
    from framefarm.renderers.preprocessors import annotator_folder, get_preprocessor

    refs = job.model
    if not refs.checkpoint:
        raise InputError("model.checkpoint", problem="is not set",
                         fix="Name an SD1.5 or SDXL checkpoint of the models folder (framefarm models lists them)")
    library = _library(refs)
    base = None
    if library is not None:
        try:
            entry = library.find("checkpoint", refs.checkpoint, field="model.checkpoint")
        except InputError:
            if not _looks_like_hub_id(refs.checkpoint):
                raise
        else:
            base = load_base(entry, dtype_name=refs.dtype, allow_pickle=refs.allow_pickle)
    if base is None:
        if _looks_like_hub_id(refs.checkpoint):
            base = load_base(refs.checkpoint, dtype_name=refs.dtype)  # local Hugging Face cache only
        elif Path(refs.checkpoint).is_absolute() and Path(refs.checkpoint).exists():
            entry = entry_for_path(Path(refs.checkpoint), "checkpoint", allow_pickle=refs.allow_pickle)
            base = load_base(require_usable(entry, "model.checkpoint"),
                             dtype_name=refs.dtype, allow_pickle=refs.allow_pickle)
        else:
            open_library(refs.models_dir)  # raises: no models folder is set
    vae = base.vae
    if refs.vae:
        if library is None:
            raise InputError("model.vae", refs.vae, "needs a models folder", "Set model.models_dir")
        vae = load_vae(library.find("vae", refs.vae, field="model.vae"), base, allow_pickle=refs.allow_pickle)
    units = []
    for index, unit in enumerate(job.controlnet):
        get_preprocessor(unit.preprocessor, field=f"controlnet.{index}.preprocessor")  # fail before rendering
        if unit.guidance_start >= unit.guidance_end:
            continue  # an empty guidance window: the unit never acts
        if library is None:
            raise InputError(f"controlnet.{index}.model", unit.model, "needs a models folder", "Set model.models_dir")
        entry = library.find("controlnet", unit.model, field=f"controlnet.{index}.model")
        units.append((index, unit, load_controlnet(entry, base, allow_pickle=refs.allow_pickle)))
    accel.accelerate_setup(base, vae, [model for _, _, model in units])
    return _Setup(library=library, base=base, vae=vae, units=units, annotators=annotator_folder(refs.models_dir))


def _library(refs):
    from framefarm.renderers.models.library import models_root, open_library

    if models_root(refs.models_dir, required=False) is None:
        return None
    return open_library(refs.models_dir, allow_pickle=refs.allow_pickle)


def _looks_like_hub_id(ref: str) -> bool:
    """``org/name`` with no weights suffix, and not a path on disk."""
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", ref) or Path(ref).suffix in (".safetensors", ".ckpt"):
        return False
    return not Path(ref).exists()


# ---------------------------------------------------------------------------------------------------------------
# One batch


def _frame_settings(job, chunk: ChunkSpec, frame: int) -> tuple[FrameSettings, str, str]:
    from framefarm.renderers.prompt_weights import extract_extra_networks

    i = chunk.local(frame)
    positive, networks = extract_extra_networks(chunk.prompts[i], field="prompts")
    negative, negative_networks = extract_extra_networks(chunk.negative_prompts[i], field="negative_prompt")
    loras: list[tuple[str, float, float]] = []
    hypernets: list[tuple[str, float]] = []
    for network in networks + negative_networks:
        if network.kind == "hypernet":
            hypernets.append((network.name, network.unet_weight))
        else:
            loras.append((network.name, network.te_weight, network.unet_weight))
    weights = []
    for index, unit in enumerate(job.controlnet):
        schedule = chunk.values.get(f"controlnet.{index}.weight")
        weights.append(float(schedule[i]) if schedule is not None else float(unit.weight))
    cfg_values = chunk.values.get("cfg_scale")
    cfg = float(cfg_values[i]) if cfg_values is not None else float(job.model.cfg_scale)
    strength = float(chunk.values["strength"][i]) if job.kind == "video2video" else 1.0
    return FrameSettings(strength, cfg, tuple(weights), tuple(loras), tuple(hypernets)), positive, negative


@dataclass(frozen=True)
class _BatchInputs:
    """What a video2video batch needs before any model runs: its source frames and each unit's control images."""

    sources: dict[int, np.ndarray]
    controls: dict[tuple[int, int], np.ndarray]  # (unit index, frame) → control image


def _batch_inputs(setup: _Setup, job, chunk: ChunkSpec, members: list[int], context: RenderContext) -> _BatchInputs:
    sources = {f: context.source_frame(f) for f in members}
    controls: dict[tuple[int, int], np.ndarray] = {}
    for index, unit, _ in setup.units:
        arrays = _control_arrays(setup, job, chunk, index, unit, members, sources, context.controls)
        controls.update({(index, f): image for f, image in zip(members, arrays)})
    return _BatchInputs(sources, controls)


def _render_batch(setup: _Setup, job, chunk: ChunkSpec, members: list[int], context: RenderContext,
                  prepared: _BatchInputs | None = None) -> dict[int, np.ndarray | PendingFrames]:
    """Render the frames of one batch; frames with equal settings share a pipeline call. Decoded frames may still
    be on their way to the host (:func:`_resolve` waits for them)."""
    groups: dict[FrameSettings, list[tuple[int, str, str]]] = {}
    for frame in members:
        settings, positive, negative = _frame_settings(job, chunk, frame)
        groups.setdefault(settings, []).append((frame, positive, negative))
    images: dict[int, np.ndarray] = {}
    for settings, items in groups.items():
        # Out of GPU memory: the group is rendered again in halves (framefarm/renderers/oom.py says what that
        # keeps deterministic and what it may change by a level or so).
        images.update(render_halving_on_oom(
            lambda part, settings=settings: _render_group(setup, job, chunk, settings, part, context, prepared), items))
    return images


def _render_group(setup: _Setup, job, chunk: ChunkSpec, settings: FrameSettings,
                  items: list[tuple[int, str, str]], context: RenderContext,
                  prepared: _BatchInputs | None = None) -> dict[int, np.ndarray | PendingFrames]:
    import torch

    from framefarm.renderers import sd15_image, sdxl_image
    from framefarm.renderers.models.detect import SDXL
    from framefarm.renderers.models.hypernetwork import HypernetworkRequest, apply_hypernetworks
    from framefarm.renderers.models.lora import LoraRequest, apply_loras
    from framefarm.renderers.prompt_encode import PromptEncoder
    from framefarm.renderers.samplers import make_scheduler

    base, refs = setup.base, job.model
    frames = [frame for frame, _, _ in items]
    img2img = job.kind == "video2video"

    # 1. Inputs that need no model: source frames, control images, seeds.
    if not img2img:
        sources = {}
    elif prepared is not None:
        sources = {f: prepared.sources[f] for f in frames}
    else:
        sources = {f: context.source_frame(f) for f in frames}
    if img2img and int(refs.steps * settings.strength) < 1:
        return dict(sources)  # no denoising step at this strength: the frame is its source
    active = [(i, unit, model) for i, unit, model in setup.units if settings.control_weights[i] > 0]
    controls = [_to_tensor([prepared.controls[(index, f)] for f in frames] if prepared is not None else
                           _control_arrays(setup, job, chunk, index, unit, frames, sources, context.controls),
                           device=setup.vae.device)
                for index, unit, _ in active]
    generators = [torch.Generator("cpu").manual_seed(chunk.seeds[chunk.local(f)]) for f in frames]
    family = sdxl_image if base.family == SDXL else sd15_image

    with base.lock:
        # 2. LoRAs fused into the shared weights (restored exactly when the next group asks for others).
        requests = tuple(LoraRequest(setup.library.find("lora", name, field="prompts <lora:…>"), te, unet)
                         for name, te, unet in settings.loras) if settings.loras else ()
        apply_loras(base, requests, allow_pickle=refs.allow_pickle)
        accel.sync_after_lora(base)  # fused QKV layers copy the LoRA-patched weights
        hypernets = tuple(HypernetworkRequest(setup.library.find("hypernetwork", name, field="prompts <hypernet:…>"),
                                              strength) for name, strength in settings.hypernets
                          ) if settings.hypernets else ()
        apply_hypernetworks(base, hypernets, allow_pickle=refs.allow_pickle)

        # 3. Prompts → conditioning (A1111 weights, chunks, embeddings, clip skip).
        texts = [p for _, p, _ in items] + [n for _, _, n in items]
        encoder = PromptEncoder(base, _embeddings_for(setup, refs, texts), clip_skip=refs.clip_skip)
        conditioning = encoder.encode_many(texts)
        kwargs = family.conditioning_kwargs(conditioning[: len(items)], conditioning[len(items):])

        # 4. The pipeline call, latents out.
        pipe = family.build_pipeline(base, img2img=img2img, controlnets=[m for _, _, m in active], vae=setup.vae,
                                     scheduler=make_scheduler(refs.sampler, base.scheduler_config))
        call: dict[str, Any] = dict(num_inference_steps=refs.steps, guidance_scale=settings.cfg,
                                    generator=generators, output_type="latent", **kwargs)
        if active:
            call.update(control_kwargs(job, settings, active))
        if img2img:
            pixels = [sources[f] for f in frames]
            if base.family == SDXL:  # diffusers' SDXL encode (float32 upcast, latents mean/std): left to it
                init = _to_tensor(pixels)
            else:  # SD1.5: encoded here in slices (diffusers encodes a generator list one frame per call)
                init = encode_sources(setup.vae, pixels, generators, slice_size=vae_slice(job.width, job.height))
        else:
            init = None
        call.update(image_kwargs(job, init, settings.strength, controls))
        with torch.inference_mode():
            latents = pipe(**call).images

        # 5. Decode in slices, with the NaN / black-frame guard; the pixels come to the host when asked for.
        decoded = queue_decode(setup.vae, latents, frames, slice_size=vae_slice(job.width, job.height),
                               lock=base.lock)
        return {frame: decoded for frame in frames}


def image_kwargs(job, init, strength: float, controls: list) -> dict[str, Any]:
    """The pipeline's image arguments: img2img's ``image`` (pixels or latents) and ``strength``, with the control
    images as ``control_image``; or, with no ``init``, txt2img's frame size with the control images as ``image``."""
    if init is not None:
        return dict(image=init, strength=strength, **({"control_image": controls} if controls else {}))
    return dict(height=job.height, width=job.width, **({"image": controls} if controls else {}))


def control_kwargs(job, settings: FrameSettings, active: list) -> dict[str, Any]:
    """The pipeline arguments of the active ControlNet units: weights, guidance windows and the frame size."""
    return dict(controlnet_conditioning_scale=[settings.control_weights[i] for i, _, _ in active],
                control_guidance_start=[u.guidance_start for _, u, _ in active],
                control_guidance_end=[u.guidance_end for _, u, _ in active], height=job.height, width=job.width)


def _resolve(images: dict[int, np.ndarray | PendingFrames]) -> dict[int, np.ndarray]:
    """Frame → pixels, waiting for the frames still on their way from the device."""
    return {frame: image.result()[frame] if isinstance(image, PendingFrames) else image
            for frame, image in images.items()}


def _to_tensor(images: list[np.ndarray], device=None):
    """RGB uint8 frames → a float ``[B, 3, H, W]`` tensor in 0…1 (what diffusers' image processors take as is).

    With ``device``: the uint8 frames travel (a quarter of the float bytes) and are converted there, with a true
    division by a device tensor (a Python-number divisor makes CUDA multiply by the reciprocal, which can differ from
    the CPU's division in the last bit): the same values as on the CPU.
    """
    import torch

    pixels = torch.from_numpy(np.stack(images))
    if device is None or torch.device(device).type == "cpu":
        return pixels.permute(0, 3, 1, 2).float().div(255.0)
    pixels = pixels.to(device, non_blocking=True)
    return pixels.permute(0, 3, 1, 2).float() / torch.tensor(255.0, device=device)


def _control_arrays(setup: _Setup, job, chunk: ChunkSpec, index: int, unit, frames: list[int],
                    sources: dict[int, np.ndarray], controls=None) -> list[np.ndarray]:
    from framefarm.images import fit_cover, load_image
    from framefarm.renderers.control_cache import control_images
    from framefarm.renderers.preprocessors import PreprocessSettings

    settings = PreprocessSettings(threshold_a=unit.threshold_a, threshold_b=unit.threshold_b,
                                  annotators=setup.annotators)
    if unit.image:
        fixed = fit_cover(load_image(unit.image, field=f"controlnet.{index}.image"), job.width, job.height)
        inputs = [(f, fixed, chunk.seeds[chunk.local(f)]) for f in frames]
    elif sources:
        inputs = [(f, sources[f], chunk.seeds[chunk.local(f)]) for f in frames]
    else:
        raise InputError(f"controlnet.{index}.image", problem=f"is needed: a {job.kind} job has no source video to "
                                                              "make control images from",
                         fix="Set the unit's image to a control image file")
    # Stored per unit and frame (framefarm/renderers/control_cache.py): a rerun or resume skips the preprocessor.
    return control_images(controls, unit.preprocessor, inputs, settings=settings,
                          field=f"controlnet.{index}.preprocessor")


def _embeddings_for(setup: _Setup, refs, texts: list[str]) -> dict[str, Any]:
    """The embeddings whose names appear in these prompts, loaded (a refused one used in a prompt is an error)."""
    from framefarm.renderers.models.embeddings import load_embedding

    if setup.library is None:
        return {}
    joined = "\n".join(texts)
    found = {}
    for entry in setup.library.of_kind("embedding"):
        if not re.search(r"(?<![\w])" + re.escape(entry.stem) + r"(?![\w])", joined, re.IGNORECASE):
            continue
        if not entry.usable:
            raise InputError("prompts", entry.stem, f"names the embedding {entry.name}, which is {entry.status}: "
                                                    f"{entry.reason}")
        found[entry.stem] = load_embedding(entry, allow_pickle=refs.allow_pickle)
    return found


# ---------------------------------------------------------------------------------------------------------------
# VAE: slices of frames


# Pixels the VAE sees per call: 8 frames at 512², 2 at 1024². Big enough to fill a GPU (the decoder's GroupNorms and
# convolutions at batch 1 use a fraction of it), small enough to add little to the UNet's peak memory.
VAE_SLICE_PIXELS = 8 * 512 * 512


def vae_slice(width: int, height: int) -> int:
    """Frames per VAE encode/decode call for this image size (fixed per job, so results don't depend on chunking)."""
    return max(1, VAE_SLICE_PIXELS // max(1, width * height))


def encode_sources(vae, images: list[np.ndarray], generators: list, *, slice_size: int):
    """RGB uint8 frames → img2img's initial latents (scaled), what diffusers' SD1.5 img2img pipelines compute from a
    ``[0, 1]`` image tensor with a list of generators, but ``slice_size`` frames per VAE call.

    Same arithmetic step by step: ``/255`` (a true division on the device, like the CPU's), ``2x − 1``, the VAE's
    dtype, ``mean + std · noise`` with each frame's noise drawn from its own generator (its first draw, as in
    diffusers), times the scaling factor. Only the encoder's batch differs (rounding, within ``PIXEL_TOLERANCE``).
    The pipeline takes 4-channel input as latents and skips its own encode.
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    device, dtype = vae.device, vae.dtype
    image = (2.0 * _to_tensor(images, device=device) - 1.0).to(dtype=dtype)
    parts = []
    with torch.inference_mode():
        for start in range(0, image.shape[0], slice_size):
            dist = vae.encode(image[start:start + slice_size]).latent_dist
            shape = (1, *dist.mean.shape[1:])
            noise = torch.cat([randn_tensor(shape, generator=g, device=device, dtype=dist.parameters.dtype)
                               for g in generators[start:start + slice_size]])
            parts.append(dist.mean + dist.std * noise)
        return vae.config.scaling_factor * torch.cat(parts)


# ---------------------------------------------------------------------------------------------------------------
# Decoding


def decode_frames(vae, latents, frames: Sequence[int], *, slice_size: int) -> dict[int, np.ndarray]:
    """Latents ``[N, C, h, w]`` → frame → RGB uint8, decoded ``slice_size`` at a time on the device.

    The NaN / all-black test and the uint8 conversion run on the device for every frame; the host waits once, for
    the flags and the pixels of the whole group. A broken frame is then decoded again alone by
    :func:`decode_latents` (float32 fallback), exactly as before.
    """
    return queue_decode(vae, latents, frames, slice_size=slice_size).result()


class PendingFrames:
    """Frames decoded (or being decoded) on the device whose pixels and NaN flags are being copied to pinned host
    memory; :meth:`result` waits for that copy only (a CUDA event), not for work queued after it."""

    def __init__(self, vae, latents, frames: Sequence[int], host, flags, event, lock=None) -> None:
        self.vae, self.latents, self.frames = vae, latents, list(frames)
        self.host, self.flags, self.event = host, flags, event
        # The base's lock: a broken frame's fallback decode switches the shared VAE to float32.
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self._done: dict[int, np.ndarray] | None = None

    @classmethod
    def ready(cls, images: dict[int, np.ndarray]) -> PendingFrames:
        """Frames already on the host (tests stand in other decoders with it)."""
        pending = cls(None, None, list(images), None, None, None)
        pending._done = dict(images)
        return pending

    def result(self) -> dict[int, np.ndarray]:
        if self._done is None:
            if self.event is not None:
                self.event.synchronize()
            flags, host = self.flags.tolist(), self.host.numpy()
            done = {}
            for k, frame in enumerate(self.frames):
                if flags[k]:
                    done[frame] = host[k]
                else:
                    with self.lock:
                        done[frame] = decode_latents(self.vae, self.latents[k:k + 1], frame=frame)
            self._done = done
            self.latents = None  # kept only for a broken frame's float32 decode
        return self._done


def queue_decode(vae, latents, frames: Sequence[int], *, slice_size: int, lock=None) -> PendingFrames:
    """Queue :func:`decode_frames`' work on the device and the copy of its results to the host; don't wait."""
    import torch

    pixels, ok = [], []
    for start in range(0, latents.shape[0], slice_size):
        raw = _decode_raw(vae, latents[start:start + slice_size])
        image = (raw / 2 + 0.5).clamp(0, 1)
        finite = torch.isfinite(raw).flatten(1).all(dim=1)
        ok.append(finite & (image.flatten(1).amax(dim=1) > 0.0))
        pixels.append(_to_uint8(image))
    flags, pixels = torch.cat(ok), torch.cat(pixels)
    if pixels.device.type != "cuda":
        return PendingFrames(vae, latents, frames, pixels.cpu(), flags.cpu(), None, lock)
    # Pinned buffers make the copies asynchronous; the event marks their end in the stream.
    host = torch.empty(pixels.shape, dtype=pixels.dtype, pin_memory=True)
    host_flags = torch.empty(flags.shape, dtype=flags.dtype, pin_memory=True)
    host.copy_(pixels, non_blocking=True)
    host_flags.copy_(flags, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    return PendingFrames(vae, latents, frames, host, host_flags, event, lock)


def decode_latents(vae, latents, *, frame: int) -> np.ndarray:
    """Latents ``[1, C, h, w]`` → an RGB uint8 frame; NaN or all-black → decoded again in float32."""
    import torch

    image = _decode(vae, latents)
    if _broken(image) and vae.dtype != torch.float32:
        original = vae.dtype
        try:
            vae.to(dtype=torch.float32)
            image = _decode(vae, latents.float())
        finally:
            vae.to(dtype=original)
    if not bool(torch.isfinite(image).all()):
        raise RenderError(f"frame {frame} decoded to NaN even with the VAE in float32: the latents are broken "
                          "(try another sampler, fewer steps, a lower CFG, or float32)")
    return np.ascontiguousarray(_to_uint8(image)[0].cpu().numpy())


def _to_uint8(image):
    """``[N, 3, H, W]`` in 0…1 → ``[N, H, W, 3]`` uint8 (on the image's device)."""
    import torch

    return (image.permute(0, 2, 3, 1).float() * 255.0).round().clamp(0, 255).to(torch.uint8)


def _decode_raw(vae, latents):
    """The VAE decoder's output for ``latents`` (unscaled by the caller), −1…1, no checks."""
    import torch

    config = vae.config
    z = latents.to(device=vae.device, dtype=vae.dtype)
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        z = z * torch.tensor(std, device=z.device, dtype=z.dtype).view(shape) / config.scaling_factor + torch.tensor(
            mean, device=z.device, dtype=z.dtype).view(shape)
    else:
        z = z / config.scaling_factor
    with torch.inference_mode():
        return vae.decode(z, return_dict=False)[0]


def _decode(vae, latents):
    import torch

    image = _decode_raw(vae, latents)
    return (image / 2 + 0.5).clamp(0, 1) if bool(torch.isfinite(image).all()) else image


def _broken(image) -> bool:
    import torch

    return not bool(torch.isfinite(image).all()) or float(image.max()) <= 0.0
