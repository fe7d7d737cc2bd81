"""The diffusers backend: SD1.5 / SDXL from the user's own model files, offline, for every job kind.

A kind decides *what* goes into a GPU call (which frames, which chains, which windows) and sits on the shared core
(:mod:`.components`, :mod:`.patches`, :mod:`.conditioning`, :mod:`.controls`, :mod:`.vae`, :mod:`.denoise`), which
decides *how* it runs. Kinds never import each other; :data:`KINDS` picks one by the job's ``kind``.

* ``video2video``: each source frame img2img'd with ControlNet from that frame (:mod:`.kinds.video2video`);
* ``deforum``: the Deforum chain, img2img of the warped previous frame (:mod:`.kinds.deforum`);
* ``animatediff``: motion clips over context windows (:mod:`.kinds.animatediff`, docs/animatediff.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version as package_version

import numpy as np

from framefarm.animation.plan import ChunkSpec
from framefarm.errors import InputError
from framefarm.renderers import accel
from framefarm.renderers.base import RenderContext

# Bump when output pixels change, so a resumed render never mixes frames of two versions.
# 2: deforum jobs render as a chain; 3: animatediff frames decode in VAE slices; 4: one diffusion core — the Deforum
# chain's LoRAs reach the fused projections, its hypernetworks apply, its SD1.5 start images are VAE-encoded as
# video2video's (within PIXEL_TOLERANCE of 3's where no network is used), AnimateDiff takes LoRA/hypernetwork tags.
RENDERER_VERSION = "4"

# A kind's own version, for pixel changes of one kind only (in the frame keys of that kind's jobs, beside
# RENDERER_VERSION, so the other kinds' frames stay valid). animatediff 2: a segment's context windows of one step
# share UNet calls and the denoising loop stays on the device.
KIND_VERSIONS = {"animatediff": "2"}

# Job kind → the module rendering it (imported on first use: importing this module loads neither torch nor
# diffusers). Each module has ``render(chunk, frames, context)``.
KINDS = {
    "video2video": "framefarm.renderers.diffusers.kinds.video2video",
    "deforum": "framefarm.renderers.diffusers.kinds.deforum",
    "animatediff": "framefarm.renderers.diffusers.kinds.animatediff.renderer",
}


def renderer_version() -> str:
    """The version in every frame key: framefarm's, the libraries' (an upgrade can move pixels) and the speed
    levers that may move a pixel by rounding."""
    parts = [RENDERER_VERSION]
    for package in ("diffusers", "torch"):
        try:
            parts.append(f"{package}={package_version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package}=?")
    parts.append(accel.version_tag())
    return ";".join(parts)


class DiffusersRenderer:
    """Stable Diffusion 1.5 / SDXL through diffusers, from the user's own model files, never the hub."""

    name = "diffusers"
    version = renderer_version()
    # Deforum frames are img2img of the previous frame: the flow runs a chained job's chunks in order.
    reads_previous_frames = True

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, chunk: ChunkSpec, frames: Sequence[int], context: RenderContext
               ) -> Iterator[tuple[int, np.ndarray]]:
        wanted = sorted(set(frames))
        if not wanted:
            return
        kind = context.job.kind
        if kind not in KINDS:
            raise InputError("kind", kind, "has no diffusers renderer", f"Use one of: {', '.join(KINDS)}")
        yield from importlib.import_module(KINDS[kind]).render(chunk, wanted, context)
