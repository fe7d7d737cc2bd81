"""One AnimateDiff segment, denoised: motion UNet, prompt travel, per-frame noise, context windows.

framefarm runs its own denoising loop over diffusers' ``UNetMotionModel`` rather than ``AnimateDiffPipeline``
because three things the pipeline cannot do decide the result: windows that wrap around a loop, noise that belongs
to a frame (not to a clip of a given length), and a segment that renders identically on any worker.

Steps of :func:`denoise_segment`:

1. Noise: frame ``i`` starts from ``randn`` of its own generator seeded with the plan's seed for frame ``i`` (and
   the same generator feeds the ancestral samplers' step noise for that frame), so its noise does not depend on the
   frame count, the segment, or the worker.
2. Every step: each context window predicts noise for its frames (with classifier-free guidance, each frame with its
   own prompt embedding), and a frame's prediction is the weighted mean over its windows.
3. The scheduler steps the whole segment at once (its state is per run, never per window).
"""

from __future__ import annotations

import contextlib

from dataclasses import dataclass, replace
from typing import Any

from framefarm.renderers import host_copies
from framefarm.renderers.diffusers.kinds.animatediff.windows import context_windows, window_weights


@dataclass
class MotionSetup:
    """A job's loaded models: the base, its motion UNet (a private copy with the motion LoRAs fused and motion scale
    hooked), and what they are, for cache keys and error messages."""

    base: Any
    unet: Any
    vae: Any
    info: Any
    key: str
    components: Any = None  # the job's Components (library, ControlNets, patches)


def build_motion_unet(unet2d, adapter, *, device, dtype, loras: list[tuple[str, dict, float]], info,
                      motion_scale: float):
    """``UNetMotionModel`` from the base UNet and the motion adapter, motion LoRAs fused, motion scale hooked."""
    from diffusers import UNetMotionModel

    from framefarm.renderers.models.motion import fuse_motion_loras

    with _fused_projections_detached(unet2d):
        unet = UNetMotionModel.from_unet2d(unet2d, adapter)
    unet.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if loras:
        fuse_motion_loras(unet, loras, info)
    if motion_scale != 1.0:
        scale_motion(unet, motion_scale)
    return unet


@contextlib.contextmanager
def _fused_projections_detached(unet):
    """The cached base UNet may carry fused QKV layers (``to_qkv``/``to_kv``, copies of ``to_q/k/v`` made by
    :mod:`framefarm.renderers.accel`). ``UNetMotionModel.from_unet2d`` copies its blocks' state dicts strictly, so the
    copies are detached while it builds; the motion UNet gets its own (unfused) attention processors."""
    detached = [(module, name, module._modules.pop(name)) for module in list(unet.modules())
                for name in ("to_qkv", "to_kv") if name in module._modules]
    try:
        yield
    finally:
        for module, name, layer in detached:
            module._modules[name] = layer


def scale_motion(unet, scale: float) -> int:
    """Scale every temporal transformer's output by ``scale`` (0: no motion module at all; 1: as trained).

    Each motion module returns ``proj_out(attention(x)) + x``; a forward hook on ``proj_out`` scales the temporal
    contribution and leaves the residual alone, which is what AnimateDiff tools call motion scale. Returns the number
    of modules hooked.
    """
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    def hook(module, inputs, output):
        return output * scale

    count = 0
    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            module.proj_out.register_forward_hook(hook)
            count += 1
    return count


def travel_weights(texts: list[str], *, loop: bool) -> tuple[list[tuple[int, int, float]], list[int]]:
    """Prompt travel: for each frame, ``(prompt a, prompt b, t)`` — its embedding is ``(1−t)·E[a] + t·E[b]``.

    Keyframes are the frames where the scheduled prompt changes (and frame 0). Between two keyframes the embedding
    moves linearly from one to the next; after the last keyframe an open clip holds it, a loop travels back to the
    first prompt so the wrap is continuous. Returns the rows (indices into the keyframe list) and the keyframes.
    """
    frames = len(texts)
    keys = [0] + [i for i in range(1, frames) if texts[i] != texts[i - 1]]
    out = []
    for i in range(frames):
        k = max(j for j, key in enumerate(keys) if key <= i)
        start = keys[k]
        if k + 1 < len(keys):
            end, nxt = keys[k + 1], k + 1
        elif loop and len(keys) > 1:
            end, nxt = frames + keys[0], 0
        else:
            out.append((k, k, 0.0))
            continue
        out.append((k, nxt, (i - start) / (end - start)))
    return out, keys


def clip_conditioning(encoder, texts: list[str], negatives: list[str], *, loop: bool):
    """Per-frame prompt embeddings, travelling between keyframes: ``(cond, uncond, pooled, pooled_uncond)``, each
    ``[N, …]``; the pooled ones (SDXL's OpenCLIP vector) are ``None`` for SD1.5."""
    import torch

    rows_pos, keys_pos = travel_weights(texts, loop=loop)
    rows_neg, keys_neg = travel_weights(negatives, loop=loop)
    unique = [texts[k] for k in keys_pos] + [negatives[k] for k in keys_neg]
    encoded = encoder.encode_many(unique)
    pos, neg = encoded[: len(keys_pos)], encoded[len(keys_pos):]

    def blend(table, rows):
        return torch.stack([table[a] * (1.0 - t) + table[b] * t if t else table[a] for a, b, t in rows])

    cond = blend([c.embeds[0] for c in pos], rows_pos)
    uncond = blend([c.embeds[0] for c in neg], rows_neg)
    if pos[0].pooled is None:
        return cond, uncond, None, None
    return (cond, uncond, blend([c.pooled[0] for c in pos], rows_pos), blend([c.pooled[0] for c in neg], rows_neg))


def frame_noise(seed: int, shape: tuple[int, ...]):
    """Frame ``i``'s generator and initial noise: a function of its seed alone."""
    import torch

    generator = torch.Generator("cpu").manual_seed(int(seed))
    return generator, torch.randn(shape, generator=generator, dtype=torch.float32)


def denoise_segment(setup: MotionSetup, *, frames: list[int], seeds: list[int], cond, uncond, scheduler,
                    pooled=None, pooled_uncond=None,
                    steps: int, cfg: float, width: int, height: int, context_length: int, context_overlap: int,
                    weighting: str, loop_windows: bool, init=None, strength: float = 1.0,
                    controls: tuple[ControlInput, ...] = (), freeinit: int = 0, freeinit_cutoff: float = 0.25):
    """Denoise the latents of ``frames`` (clip frame numbers, in order) and return them, ``[F, C, h, w]`` float32.

    Args:
        cond, uncond: per-*clip*-frame embeddings (indexed by the clip frame number).
        pooled, pooled_uncond: SDXL's per-clip-frame pooled embeddings (``None`` for SD1.5); a window gets the mean
            of its frames' (SDXL conditions a whole window on one pooled vector and one size).
        seeds: the seed of each of ``frames``.
        loop_windows: the segment is a whole loop: windows wrap around its end.
        init: video-to-video: the source frames' latents ``[F, C, h, w]``, noised to ``strength`` (0 keeps the
            source, 1 repaints it) and denoised from there, as diffusers' img2img does.
        controls: ControlNet units with one control image per segment frame, run per window on the frames as a
            batch of images (what diffusers' AnimateDiff ControlNet pipeline does), inside their guidance range.
        freeinit: FreeInit iterations after the first pass (0: off); ``freeinit_cutoff`` is the low-pass filter's
            normalised cut-off frequency (time and space).
    """
    import torch

    scale = 2 ** (len(setup.vae.config.block_out_channels) - 1)
    shape = (setup.unet.config.in_channels, height // scale, width // scale)
    # 1. Noise, frame by frame.
    generators, noise = zip(*(frame_noise(s, shape) for s in seeds))
    generators = list(generators)
    timesteps = _timesteps(scheduler, steps, strength if init is not None else 1.0)
    if len(timesteps) == 0:
        return init.float()
    if init is None:
        latents = torch.stack(noise) * scheduler.init_noise_sigma
    else:
        latents = scheduler.add_noise(init.float(), torch.stack(noise), timesteps[:1].repeat(len(frames)))
    index = host_copies.to_device(torch.tensor(frames), cond.device)
    conditioning = (cond[index], uncond[index], None if pooled is None else pooled[index],
                    None if pooled_uncond is None else pooled_uncond[index], (height, width))
    window_args = dict(context_length=context_length, context_overlap=context_overlap, weighting=weighting,
                       loop_windows=loop_windows)
    # 2. Denoise; 3. FreeInit: re-noise the result, keep its low frequencies (the layout, and the motion over time),
    # take the high ones from fresh noise, denoise again (Wu et al. 2023, "FreeInit"). All noise comes from the
    # frames' own generators, so it stays a function of each frame's seed.
    for iteration in range(1 + freeinit):
        if iteration:
            timesteps = _timesteps(scheduler, steps, strength if init is not None else 1.0)
            start = timesteps[:1].repeat(len(frames))
            renoised = scheduler.add_noise(latents, _draw(generators, shape).to(latents.device), start)
            fresh = scheduler.add_noise(torch.zeros_like(latents), _draw(generators, shape).to(latents.device), start)
            latents = freeinit_mix(renoised, fresh, freeinit_cutoff)
        latents = _denoise_loop(setup, latents, timesteps, scheduler, generators, conditioning, cfg, controls,
                                **window_args)
    return latents


def _timesteps(scheduler, steps: int, strength: float):
    """Reset the scheduler and return the timesteps to run (the last ``strength`` of them, img2img-style)."""
    scheduler.set_timesteps(steps, device="cpu")
    skip = (steps - min(int(steps * strength), steps)) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(skip)
    return scheduler.timesteps[skip:]


def _draw(generators, shape):
    import torch

    return torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])


def freeinit_mix(renoised, fresh, cutoff: float):
    """Low frequencies (over frames, height and width) of ``renoised`` plus the high ones of ``fresh``: a Gaussian
    low-pass filter in the 3D Fourier domain, as FreeInit's default filter."""
    import torch

    frames, _, height, width = renoised.shape
    axes = [torch.fft.fftfreq(n, device=renoised.device) / max(cutoff, 1e-6) for n in (frames, height, width)]
    ft, fh, fw = torch.meshgrid(*axes, indexing="ij")
    low = torch.exp(-(ft ** 2 + fh ** 2 + fw ** 2) / 2).view(frames, 1, height, width)
    dims = (0, 2, 3)
    a = torch.fft.fftn(renoised, dim=dims)
    b = torch.fft.fftn(fresh, dim=dims)
    return torch.fft.ifftn(a * low + b * (1 - low), dim=dims).real.float()


# Context windows per UNet call at 512² (fewer at larger sizes, see windows_per_call): a segment's windows of one step
# go through the motion UNet together. Fixed by the frame size alone, so which windows share a call is decided by the
# job, never by the GPU (batched matmuls are not bit-identical across batch compositions).
WINDOWS_PER_CALL_512 = 4


def windows_per_call(width: int, height: int) -> int:
    """How many context windows share a UNet call: 4 at 512², 1 from 1024² (SDXL's 16-frame windows with CFG are
    large batches already)."""
    return max(1, (WINDOWS_PER_CALL_512 * 512 * 512) // (width * height))


def _denoise_loop(setup, latents, timesteps, scheduler, generators, conditioning, cfg, controls, *,
                  context_length: int, context_overlap: int, weighting: str, loop_windows: bool):
    """The denoising steps. Latents, the windows' weighted sums and the scheduler step stay on the device, and
    nothing the steps need is copied from pageable host memory (such a copy makes the CUDA stream wait for all
    queued work, so the GPU would idle while the CPU queues the next UNet call): the windows' frame indices and
    weights, the models' timesteps and the control images go to the device once (with the segment's start latents,
    through pinned memory where :mod:`~framefarm.renderers.host_copies` is on, so a segment's set-up queues behind
    the previous segment's work instead of draining it), and each frame's step noise from its CPU generator goes
    through pinned memory (:func:`~framefarm.renderers.diffusers.host_noise.pinned_noise`)."""
    import torch

    from framefarm.renderers.diffusers.host_noise import pinned_noise

    unet, base = setup.unet, setup.base
    device = base.device
    cond_f, uncond_f, pooled_f, pooled_uncond_f, size = conditioning
    latents = host_copies.to_device(latents, device)
    count = latents.shape[0]
    height, width = size
    per_call = windows_per_call(width, height)
    window_cache: dict[tuple[int, ...], tuple] = {}  # window → (its frames, its weights) on the device, made once

    def on_device(window: list[int]):
        key = tuple(window)
        if key not in window_cache:
            weights = torch.from_numpy(window_weights(len(window), weighting)).view(-1, 1, 1, 1)
            window_cache[key] = (host_copies.to_device(torch.tensor(window), device),
                                 host_copies.to_device(weights, device))
        return window_cache[key]

    # The models' copy of the timesteps; the scheduler keeps its CPU ones.
    model_timesteps = host_copies.to_device(timesteps, device)
    controls = tuple(replace(c, images=host_copies.to_device(c.images, device).to(base.dtype)) for c in controls)
    with pinned_noise():
        for step, t in enumerate(timesteps):
            # a. Each context window predicts its frames' noise; a frame's prediction is the weighted mean.
            stride = max(1, context_length - context_overlap)
            shift = (step % 2) * (stride // 2) if loop_windows else 0
            windows = context_windows(count, context_length, context_overlap, loop=loop_windows, shift=shift)
            model_in = scheduler.scale_model_input(latents, t)
            total = torch.zeros_like(latents)
            weight_sum = torch.zeros((count, 1, 1, 1), device=device)
            progress = step / len(timesteps)
            for group in _window_groups(windows, per_call):
                placed = [on_device(window) for window in group]
                preds = _predict_windows(unet, base, model_in, model_timesteps[step], [w for w, _ in placed], cond_f,
                                         uncond_f, pooled_f, pooled_uncond_f, size, cfg, controls, progress)
                for (w, weights), pred in zip(placed, preds):  # one index_add per window: no duplicate index
                    total.index_add_(0, w, pred * weights)
                    weight_sum.index_add_(0, w, weights)
            noise_pred = total / weight_sum
            # b. One scheduler step for the whole segment; step noise per frame from that frame's generator.
            latents = scheduler.step(noise_pred, t, latents, generator=generators, return_dict=False)[0]
    return latents


def _window_groups(windows: list[list[int]], per_call: int) -> list[list[list[int]]]:
    """Consecutive windows of equal length, at most ``per_call`` to a group."""
    groups: list[list[list[int]]] = []
    for window in windows:
        if groups and len(groups[-1]) < per_call and len(groups[-1][0]) == len(window):
            groups[-1].append(window)
        else:
            groups.append([window])
    return groups


def _predict_windows(unet, base, model_in, t, index, cond_f, uncond_f, pooled_f, pooled_uncond_f, size, cfg,
                     controls, progress: float) -> list:
    """One UNet call for a group of equal-length windows (``index``: each window's frames, on the device): each
    window's guided noise prediction ``[F, C, h, w]``. The batch is ``[window 1 … window W]`` (unconditional ones
    first with CFG), frames in order inside each."""
    import torch

    guided = cfg != 1.0
    n = len(index)
    x = torch.cat([model_in[w].permute(1, 0, 2, 3)[None] for w in index])  # [W, C, F, h, w]
    states = torch.cat([cond_f[w] for w in index])
    if guided:
        x = torch.cat([x, x])
        states = torch.cat([torch.cat([uncond_f[w] for w in index]), states])
    extra = _control_residuals(controls, x, t, states, index, progress, base) if controls else {}
    if pooled_f is not None:
        text = torch.cat([pooled_f[w].mean(0, keepdim=True) for w in index])
        if guided:
            text = torch.cat([torch.cat([pooled_uncond_f[w].mean(0, keepdim=True) for w in index]), text])
        # SDXL's micro-conditioning: original size, crop (0, 0), target size.
        ids = torch.tensor([[size[0], size[1], 0, 0, size[0], size[1]]], dtype=torch.float32)
        extra["added_cond_kwargs"] = {"text_embeds": text.to(base.device, base.dtype),
                                      "time_ids": ids.repeat(x.shape[0], 1).to(base.device, base.dtype)}
    with torch.inference_mode():
        out = unet(x.to(base.device, base.dtype), t, encoder_hidden_states=states.to(base.device, base.dtype),
                   return_dict=False, **extra)[0].float()
    out = out.permute(0, 2, 1, 3, 4)  # [B, F, C, h, w]
    if not guided:
        return [out[k] for k in range(n)]
    return [out[k] + cfg * (out[n + k] - out[k]) for k in range(n)]


@dataclass(frozen=True)
class ControlInput:
    """One ControlNet unit over a segment: the model, ``images`` ``[F, 3, H, W]`` in 0…1, weight and range."""

    model: Any
    images: Any
    weight: float
    start: float
    end: float


def _control_residuals(controls, x, t, states, windows, progress: float, base) -> dict[str, Any]:
    """Summed ControlNet residuals for a UNet call over ``windows`` (frames as a batch of images, in the UNet's
    batch order: the windows in turn, repeated for CFG's unconditional half)."""
    import torch

    down, mid = None, None
    copies = x.shape[0] // len(windows)
    flat = x.permute(0, 2, 1, 3, 4).reshape((-1,) + tuple(x.shape[1:2]) + tuple(x.shape[3:]))  # [B·F, C, h, w]
    for control in controls:
        if not control.start <= progress <= control.end or control.weight == 0:
            continue
        image = torch.cat([control.images[w] for w in windows]).repeat(copies, 1, 1, 1)
        with torch.inference_mode():
            d, m = control.model(flat.to(base.device, base.dtype), t,
                                 encoder_hidden_states=states.to(base.device, base.dtype),
                                 controlnet_cond=image.to(base.device, base.dtype),
                                 conditioning_scale=control.weight, return_dict=False)
        down = list(d) if down is None else [a + b for a, b in zip(down, d)]
        mid = m if mid is None else mid + m
    if down is None:
        return {}
    return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}
