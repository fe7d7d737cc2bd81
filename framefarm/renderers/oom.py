"""Out of GPU memory: render the batch again in halves instead of failing the chunk.

A batch that does not fit (a bigger resolution than the batch size was tuned for, another process on the same GPU,
fragmentation late in a long job) is split into two halves, each rendered on its own; a half that still does not
fit is halved again, down to single frames. Only a single frame that does not fit fails the chunk (and the farm's
retries, error budget and blocklist take it from there).

Which frames share a call stays deterministic: a batch splits at the same place every time (its first ⌈n/2⌉ frames,
then the rest), so the composition depends only on the batch and on how many halvings memory forced. Pixels do
not: batched matrix products are not bit-identical across batch sizes, so a frame rendered in a halved batch may
differ from the full batch's by the drift docs/models.md measures between batch sizes (a few levels of 255 on
the tiny test model). Frame keys don't change (the key describes the frame, not the call that made it).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

log = logging.getLogger(__name__)

# Messages of memory errors that torch raises as plain RuntimeError (older CUDA paths, cuDNN/cuBLAS workspaces, MPS).
_OOM_MESSAGES = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED",
                 "MPS backend out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the device ran out of memory (``torch.OutOfMemoryError`` or an equivalent message)."""
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MESSAGES)


def release_cached_memory() -> None:
    """Give the failed call's cached blocks back before trying smaller (a no-op on CPU)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def split_halves(items: Sequence[Item]) -> tuple[list[Item], list[Item]]:
    """The first ⌈n/2⌉ items, then the rest: the one place a batch is ever split."""
    middle = (len(items) + 1) // 2
    return list(items[:middle]), list(items[middle:])


def render_halving_on_oom(render: Callable[[list[Item]], dict[int, Result]], items: Sequence[Item], *,
                          what: str = "batch") -> dict[int, Result]:
    """``render(items)``, or on out-of-memory the union of ``render`` over each half (recursively).

    ``render`` must be safe to call again after it raised (no half-applied state): the diffusers renderer's group
    call is (LoRA weights are applied idempotently, the generators are made fresh inside it).
    """
    try:
        return render(list(items))
    except Exception as exc:
        if not is_out_of_memory(exc) or len(items) <= 1:
            raise
        release_cached_memory()
        first, second = split_halves(items)
        log.warning("out of memory rendering a %s of %d frame(s); retrying as %d + %d", what, len(items),
                    len(first), len(second))
    result = render_halving_on_oom(render, first, what=what)
    result.update(render_halving_on_oom(render, second, what=what))
    return result
