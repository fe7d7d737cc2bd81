"""``batch_size = "auto"`` for video2video: a number of frames per GPU batch, chosen once per job.

Which frames share a batch changes their pixels slightly (batched matmuls round differently, docs/models.md), so
the batch size is part of every frame key. It must therefore be one number for the whole job — never chosen per
worker from that worker's free memory, or two GPUs would render different pixels for the same frame and a resume on
another machine would re-render everything. The render flow resolves ``"auto"`` when it plans the job
(:func:`framefarm.job_inputs.resolve_job_batch_size`), records it in the job's folder (``batch_size.json``) and in
the manifest, and hands every chunk the job with the number filled in; later runs of the job reuse the record.

How the number is chosen:

* **CPU** (no CUDA device where the flow plans): :data:`CPU_BATCH_SIZE` = 4, the shipped default. On a CPU a batch
  saves nothing but Python overhead, and 4 keeps the frames identical to a job that left ``batch_size`` at its
  default.
* **GPU**: :func:`framefarm.renderers.accel.batch_size_for_memory` with the *smallest* free memory over the
  visible GPUs (every GPU of the farm must fit the batch), the model weights as the fixed part, and an estimate of
  one frame's activations (:func:`bytes_per_frame`). Free memory is measured in a short-lived child process, so the
  flow process never holds a CUDA context of its own.

The per-frame figure is an estimate scaled from SD1.5 at 512×512 in float16 (:data:`SD15_BYTES_PER_MEGAPIXEL`,
×2 for classifier-free guidance's two UNet rows, which it includes); measure your own with ``benchmarks/gpu`` and
set ``$FRAMEFARM_BYTES_PER_FRAME`` on the machine that runs the flow to use it instead. A batch that still runs out
of memory is split in halves by the renderer (framefarm/renderers/oom.py), so a high estimate costs speed, not the
render. The flow must plan on a machine with the GPUs' kind: a flow planned on a CPU-only orchestrator resolves
the CPU value (pin an integer ``batch_size`` there instead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framefarm.errors import InputError
from framefarm.renderers.accel import batch_size_for_memory

if TYPE_CHECKING:  # the type only: importing the job models at run time would pull in pydantic
    from framefarm.job.schema import AnyJob

CPU_BATCH_SIZE = 4
BYTES_PER_FRAME_ENV = "FRAMEFARM_BYTES_PER_FRAME"
# Activation memory of one frame (both CFG rows) through the UNet, per megapixel of output, float16: SD1.5's UNet
# at 512×512 peaks near 0.6 GiB a frame above its weights with SDPA attention; SDXL's is about 1.6× per pixel (more
# channels in its attention blocks). Each ControlNet unit adds about its encoder half of a UNet again.
SD15_BYTES_PER_MEGAPIXEL = 2.4 * 2**30
SDXL_FACTOR = 1.6
CONTROLNET_FACTOR = 0.5
# One frame at a time goes through the VAE decoder (framefarm.renderers.diffusers.vae): its peak, per megapixel.
VAE_DECODE_BYTES_PER_MEGAPIXEL = 2.5 * 2**30

_FREE_MEMORY_PROBE = (
    "import torch\n"
    "if torch.cuda.is_available():\n"
    "    print(min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())))\n"
)


@dataclass(frozen=True)
class BatchSizeChoice:
    """What ``"auto"`` became and why (recorded in ``batch_size.json`` and the manifest)."""

    batch_size: int
    device: str  # "cpu" or "cuda"
    free_bytes: int | None = None
    fixed_bytes: int | None = None
    bytes_per_frame: int | None = None
    inputs: dict[str, Any] | None = None  # what the choice depended on; a later run reuses it only if equal

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def choice_inputs(job: AnyJob, backend: str) -> dict[str, Any]:
    """The job settings the choice depends on: a record made for other settings is not reused."""
    return {"backend": backend, "width": job.width, "height": job.height, "checkpoint": job.model.checkpoint,
            "dtype": job.model.dtype, "controlnets": [unit.model for unit in job.controlnet]}


def free_gpu_bytes() -> int | None:
    """The smallest free memory over the visible CUDA devices, or ``None`` without any (measured in a child)."""
    result = subprocess.run([sys.executable, "-c", _FREE_MEMORY_PROBE], capture_output=True, text=True,
                            check=False, timeout=300)
    text = result.stdout.strip()
    if result.returncode != 0:
        raise InputError("batch_size", "auto", f"could not measure free GPU memory: {result.stderr.strip()[-500:]}",
                         "Set batch_size to a number")
    return int(text) if text else None


def bytes_per_frame(job: AnyJob, *, sdxl: bool) -> int:
    """One frame's activation estimate for this job (see the module docstring), or ``$FRAMEFARM_BYTES_PER_FRAME``."""
    explicit = os.environ.get(BYTES_PER_FRAME_ENV)
    if explicit:
        try:
            value = int(float(explicit))
        except ValueError:
            value = 0
        if value <= 0:
            raise InputError(BYTES_PER_FRAME_ENV, explicit, "must be a positive number of bytes",
                             "Example: FRAMEFARM_BYTES_PER_FRAME=700000000")
        return value
    megapixels = job.width * job.height / 1e6
    per_frame = SD15_BYTES_PER_MEGAPIXEL * megapixels * (SDXL_FACTOR if sdxl else 1.0)
    per_frame *= 1 + CONTROLNET_FACTOR * len(job.controlnet)
    if job.model.dtype == "float32":
        per_frame *= 2
    return int(per_frame)


def _weights(job: AnyJob) -> tuple[int, bool]:
    """Bytes of the model files the job loads, and whether the checkpoint is SDXL (from its file, cheaply)."""
    from framefarm.renderers.models.keys import model_files

    files = model_files(job)
    size = sum(_size(Path(path)) for path in files.values())
    sdxl = False
    checkpoint = files.get("model.checkpoint")
    if checkpoint:
        from framefarm.renderers.models.detect import SDXL
        from framefarm.renderers.models.library import entry_for_path

        try:
            sdxl = entry_for_path(Path(checkpoint), "checkpoint", allow_pickle=job.model.allow_pickle).base == SDXL
        except Exception:  # noqa: BLE001 - an unreadable file fails properly when loaded; size it as SD1.5 here
            sdxl = False
    return size, sdxl


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():  # a diffusers folder
        return sum(child.stat().st_size for child in path.rglob("*") if child.is_file())
    return 0


def resolve_batch_size(job: AnyJob, backend: str = "diffusers") -> BatchSizeChoice:
    """Choose the batch size for a job whose ``batch_size`` is ``"auto"`` (see the module docstring)."""
    inputs = choice_inputs(job, backend)
    free = free_gpu_bytes() if backend != "preview" else None  # the preview renders one frame at a time on a CPU
    if free is None:
        return BatchSizeChoice(batch_size=CPU_BATCH_SIZE, device="cpu", inputs=inputs)
    return gpu_choice(job, free, inputs)


def gpu_choice(job: AnyJob, free: int, inputs: dict[str, Any] | None = None) -> BatchSizeChoice:
    """The batch size for ``free`` bytes of GPU memory (the smallest over the farm's GPUs)."""
    weights, sdxl = _weights(job)
    fixed = weights + int(VAE_DECODE_BYTES_PER_MEGAPIXEL * job.width * job.height / 1e6)
    per_frame = bytes_per_frame(job, sdxl=sdxl)
    size = batch_size_for_memory(per_frame, free_bytes=free, fixed_bytes=fixed, cap=256)
    return BatchSizeChoice(batch_size=size, device="cuda", free_bytes=free, fixed_bytes=fixed,
                           bytes_per_frame=per_frame, inputs=json.loads(json.dumps(inputs or {})))
