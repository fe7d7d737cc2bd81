"""The VAE of every kind: frames in and out of latent space, in slices of frames, pixels fetched a batch late.

Why slices: one frame per VAE call left an H200 idle between hundreds of small launches and a device sync per frame;
a whole batch at once adds its activations to the UNet's peak memory. :func:`vae_slice` fixes the slice size per
image size, so which frames share a VAE call is decided by the job, never by chunking (batched convolutions round
differently at other batch sizes).

Numerical safety: a frame that decodes to NaN or to all black (the fp16 VAE overflow of SDXL) is decoded again, alone,
with the VAE in float32; if that fails too the render stops with an error rather than storing a broken frame. The
check runs on the device for a whole slice and costs one device sync per group, not several per frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

from framefarm.errors import RenderError


class StagedFrames(list):
    """RGB uint8 frames (a list, as every caller takes them) with their ``[B, H, W, 3]`` stack already made — in
    pinned memory where CUDA is — so :func:`to_tensor` only queues the copy.

    Why: stacking a batch's 32 frames at 512² (25 MB) and pinning it took 45–90 ms on the thread that launches the
    GPU's work, while the helper thread making the next batch's control images competed for the GIL; at a chunk's
    start the GPU waited for it (an H100 profile of video2video: the largest idle gap, 89 ms per chunk). The kind's
    helper thread stages the frames while the GPU is busy instead. A list made from it by slicing or filtering is a
    plain list again, and is stacked where it is used, as before.
    """

    def __init__(self, images) -> None:
        import torch

        super().__init__(images)
        stacked = torch.from_numpy(np.stack(self))
        self.stacked = stacked.pin_memory() if torch.cuda.is_available() else stacked


def to_tensor(images: list[np.ndarray], device=None):
    """RGB uint8 frames → a float ``[B, 3, H, W]`` tensor in 0…1 (what diffusers' image processors take as is).

    With ``device``: the uint8 frames travel (a quarter of the float bytes) and are converted there, with a true
    division by a device tensor (a Python-number divisor makes CUDA multiply by the reciprocal, which can differ from
    the CPU's division in the last bit): the same values as on the CPU. :class:`StagedFrames` come stacked already.
    """
    import torch

    pixels = images.stacked if isinstance(images, StagedFrames) else torch.from_numpy(np.stack(images))
    if device is None or torch.device(device).type == "cpu":
        return pixels.permute(0, 3, 1, 2).float().div(255.0)
    # Pinned, so the copy queues behind the GPU's work instead of making the stream wait for it (a pageable copy
    # synchronises); the divisor is filled on the device for the same reason (torch.tensor(…, device) is a copy).
    if torch.device(device).type == "cuda" and not pixels.is_pinned():
        pixels = pixels.pin_memory()
    pixels = pixels.to(device, non_blocking=True)
    return pixels.permute(0, 3, 1, 2).float() / torch.full((), 255.0, device=device)


def resolve(images: dict[int, np.ndarray | PendingFrames]) -> dict[int, np.ndarray]:
    """Frame → pixels, waiting for the frames still on their way from the device."""
    return {frame: image.result()[frame] if isinstance(image, PendingFrames) else image
            for frame, image in images.items()}


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
    image = (2.0 * to_tensor(images, device=device) - 1.0).to(dtype=dtype)
    parts = []
    with torch.inference_mode():
        for start in range(0, image.shape[0], slice_size):
            dist = vae.encode(image[start:start + slice_size]).latent_dist
            shape = (1, *dist.mean.shape[1:])
            noise = torch.cat([randn_tensor(shape, generator=g, device=device, dtype=dist.parameters.dtype)
                               for g in generators[start:start + slice_size]])
            parts.append(dist.mean + dist.std * noise)
        return vae.config.scaling_factor * torch.cat(parts)


def encode_means(vae, images: list[np.ndarray]):
    """RGB uint8 frames → scaled latents ``[F, C, h, w]`` on the CPU, float32: the encoder's mean, no sampling (no
    randomness to seed), one frame per call (a frame's latents don't depend on which frames share its clip) — what
    AnimateDiff's video-to-video starts from."""
    import torch

    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    out = []
    with torch.inference_mode():
        for frame in pixels:  # one at a time: results do not depend on how many frames a segment has
            dist = vae.encode(frame[None].to(vae.device, vae.dtype)).latent_dist
            out.append(dist.mean.float().cpu()[0] * vae.config.scaling_factor)
    return torch.stack(out)


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
