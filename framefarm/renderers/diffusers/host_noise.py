"""Seeded CPU noise that reaches the GPU without stalling it.

Every frame's noise comes from its own CPU generator (the seed lock, :mod:`.denoise`), and diffusers draws it with
``randn_tensor``: on the CPU, then ``.to("cuda")``. A copy from ordinary (pageable) host memory makes the CUDA
stream synchronise first, so each denoising step — the scheduler draws step noise every step, Euler included —
waited for the GPU to finish all queued work before the next UNet call could even be queued: the GPU then idled while
the CPU launched that call's kernels. Through pinned memory the copy is queued like a kernel and nothing waits.

:func:`pinned_noise` makes diffusers' modules use :func:`randn_tensor` while framefarm's own calls run. The values
are diffusers' own (the same function draws them on the CPU, same generators, shapes and dtypes); only the copy
differs. It is scoped, not installed for the whole process, so plain diffusers in the same process (the GPU
benchmark's baseline) runs as shipped. A diffusers call in another thread meanwhile gets the same numbers either way.

Why not a library call: diffusers has no option for it (``randn_tensor`` is imported by name into each scheduler
and pipeline module), and drawing the noise on the GPU would change every frame's pixels.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

from framefarm.renderers.host_copies import pinned_copy

# Off: diffusers' own copies (the GPU benchmark times both in one process).
ENABLED = True

_lock = threading.Lock()
_depth = 0
_swapped: list = []
_diffusers_randn = None


def _original():
    """diffusers' own function, kept before any module is swapped (``torch_utils`` itself is swapped too, so a
    function-level ``from diffusers.utils.torch_utils import randn_tensor`` inside the scope gets ours)."""
    global _diffusers_randn
    if _diffusers_randn is None:
        from diffusers.utils.torch_utils import randn_tensor as original

        _diffusers_randn = original
    return _diffusers_randn


def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
    """``diffusers.utils.torch_utils.randn_tensor``, same values; noise drawn on the CPU for a CUDA device is
    copied from pinned memory, queued behind the GPU's work instead of waiting for it."""
    import torch

    original = _original()
    target = torch.device(device) if isinstance(device, str) else device
    generators = generator if isinstance(generator, list) else [generator]
    on_cpu = all(g is not None and g.device.type == "cpu" for g in generators)
    if target is None or target.type != "cuda" or not on_cpu or not torch.cuda.is_available():
        return original(shape, generator=generator, device=device, dtype=dtype, layout=layout)
    host = original(shape, generator=generator, device=torch.device("cpu"), dtype=dtype, layout=layout)
    return pinned_copy(host, target)


_scan: tuple[int, list] = (-1, [])  # (len(sys.modules) when scanned, the diffusers modules using randn_tensor)


def _modules_drawing_noise() -> list:
    """The diffusers modules that imported ``randn_tensor``. Scanning sys.modules takes ~1.5 ms, once per group call
    (each Deforum frame); it is redone only when modules were imported since (a pipeline's module on first use)."""
    global _scan
    if _scan[0] != len(sys.modules):
        original = _original()
        _scan = (len(sys.modules), [module for name, module in list(sys.modules.items())
                                    if name.startswith("diffusers.") and getattr(module, "randn_tensor", None)
                                    in (original, randn_tensor)])
    return _scan[1]


@contextlib.contextmanager
def pinned_noise() -> Iterator[None]:
    """While inside: diffusers' schedulers and pipelines draw their noise through :func:`randn_tensor`."""
    global _depth
    with _lock:
        if _depth == 0 and ENABLED:
            _swapped[:] = _modules_drawing_noise()
            for module in _swapped:
                module.randn_tensor = randn_tensor
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                original = _original()
                for module in _swapped:
                    module.randn_tensor = original
                _swapped.clear()
