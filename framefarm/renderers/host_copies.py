"""Copies from the host that queue behind the GPU's work instead of waiting for it.

A copy to the GPU from ordinary (pageable) host memory makes torch synchronise the stream first: the host waits until
the GPU has run everything queued, and the GPU then idles until the host has queued the next kernels. Inside a
batch's denoising steps framefarm has none left (seeded noise: :mod:`framefarm.renderers.diffusers.host_noise`), but a
batch's start had several — the prompt's token ids, and the diffusers scheduler's ``set_timesteps`` and ``add_noise``
(timesteps and sigmas built on the CPU, copied over, one copied back, a Python list used as a GPU index). Each throws
away the lead the host had built while the previous batch ran, so the GPU idled through the host's set-up of the
next batch.

* :func:`to_device`: a CPU tensor to an accelerator through pinned memory, non-blocking (same bytes).
* :func:`pinned_copies`: a torch function mode doing that for ``Tensor.to`` and for list indices of accelerator
  tensors, for code framefarm does not own (scoped to a scheduler's set-up calls, never to a model's forward).
* :func:`sync_free_schedule`: a diffusers scheduler whose ``set_timesteps`` computes on the CPU and moves its
  timesteps over like that, and whose ``add_noise`` runs under :func:`pinned_copies`. The values are diffusers' own
  (the same code computes them; a float copy or index is exact wherever it runs), so frames do not change; the CPU
  tests compare with diffusers' unwrapped scheduler and pipeline.

Why not a library call: diffusers has no option for where a scheduler builds its tables, and torch copies pageable
memory synchronously by design (the memory could change under an asynchronous copy; pinned memory from torch's
caching host allocator is held until its copy has run).
"""

from __future__ import annotations

import inspect
from typing import Any

# Device types whose copies go through pinned memory. The CPU tests add "cpu" to run the same code paths here.
PINNED_TARGETS = ("cuda",)
# On by default (``bench_gpu.py --compare-host-copies`` times each job both ways in one process and compares the
# pixels); off, prompts, schedulers and AnimateDiff's segment set-up copy as torch and diffusers do.
ENABLED = True


def _pinned_target(device) -> bool:
    import torch

    return device is not None and torch.device(device).type in PINNED_TARGETS


def pinned_copy(tensor, device):
    """A CPU tensor on ``device``, copied from pinned memory without waiting for the GPU (pinned only where CUDA
    is: the CPU tests run the same path). The caching host allocator keeps the pinned block until the copy has run,
    so it is never reused early. Also :mod:`framefarm.renderers.diffusers.host_noise`'s copy."""
    import torch

    return (tensor.pin_memory() if torch.cuda.is_available() else tensor).to(device, non_blocking=True)


def to_device(tensor, device):
    """``tensor.to(device)``; from the CPU to an accelerator through pinned memory, without waiting for the GPU."""
    if ENABLED and tensor.device.type == "cpu" and _pinned_target(device):
        return pinned_copy(tensor, device)
    return tensor.to(device)


_pinned_copies_class = None


def pinned_copies():
    """A :class:`torch.overrides.TorchFunctionMode` (enter it with ``with``): while active, ``cpu_tensor.to(<an
    accelerator>, …)`` copies through pinned memory, and an accelerator tensor indexed with a Python list of ints
    gets its index the same way (torch would copy the list synchronously). Anything else runs unchanged. The class
    is made on first use, so importing this module does not import torch."""
    global _pinned_copies_class
    if _pinned_copies_class is None:
        import torch
        from torch.overrides import TorchFunctionMode

        class PinnedCopies(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if func is torch.Tensor.to and args and args[0].device.type == "cpu":
                    try:
                        device, dtype, _, memory_format = torch._C._nn._parse_to(*args[1:], **kwargs)
                    except (TypeError, RuntimeError):  # a form _parse_to does not know (copy=…): torch's own
                        device = None
                    if _pinned_target(device):
                        moved = to_device(args[0], device)
                        if dtype is None and memory_format is None:
                            return moved
                        return moved.to(dtype=dtype or moved.dtype,
                                        memory_format=memory_format or torch.preserve_format)
                if func is torch.Tensor.__getitem__ and len(args) == 2 and _pinned_target(args[0].device):
                    index = args[1]
                    if isinstance(index, list) and index and all(type(i) is int for i in index):  # bools are ints too
                        return args[0][to_device(torch.tensor(index, dtype=torch.long), args[0].device)]
                return func(*args, **kwargs)

        _pinned_copies_class = PinnedCopies
    return _pinned_copies_class()


def sync_free_schedule(scheduler):
    """``scheduler`` (a diffusers scheduler, changed in place and returned) with its set-up calls kept off the
    stream: see the module docstring. Unchanged with ``ENABLED`` off."""
    if not ENABLED:
        return scheduler
    set_timesteps, add_noise = scheduler.set_timesteps, getattr(scheduler, "add_noise", None)
    signature = inspect.signature(set_timesteps)

    def set_timesteps_on_host(*args: Any, **kwargs: Any):
        bound = signature.bind(*args, **kwargs)
        device = bound.arguments.get("device")
        if not _pinned_target(device):
            return set_timesteps(*args, **kwargs)
        bound.arguments["device"] = "cpu"
        result = set_timesteps(*bound.args, **bound.kwargs)
        # Only the timesteps go to the GPU: the pipeline feeds them to the UNet. diffusers' schedulers keep their
        # sigma tables on the CPU themselves ("to avoid too much CPU/GPU communication").
        scheduler.timesteps = to_device(scheduler.timesteps, device)
        return result

    scheduler.set_timesteps = set_timesteps_on_host
    if add_noise is not None:
        def add_noise_pinned(*args: Any, **kwargs: Any):
            with pinned_copies():
                return add_noise(*args, **kwargs)

        scheduler.add_noise = add_noise_pinned
    return scheduler
