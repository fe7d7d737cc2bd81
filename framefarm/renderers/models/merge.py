"""Checkpoint merging, A1111's checkpoint merger's two modes, tensor by tensor.

* ``weighted-sum``:   ``A·(1−α) + B·α``
* ``add-difference``: ``A + (B − C)·α``
  (e.g. A = your model, B = an inpainting model, C = the base B was made from)

Every tensor of A is written, in A's order and dtype: a tensor that B (or C) lacks, or has in another shape, is
copied from A unchanged and counted; integer tensors are copied from A. Arithmetic is in float32. Inputs are read
one tensor at a time from memory-mapped safetensors and the output is streamed (:class:`StreamingWriter`), so two
SDXL checkpoints merge in about one tensor's worth of memory. The recipe (inputs with their short hashes, mode,
alpha) is stored in the output's metadata under ``framefarm_merge``.

Pickle inputs are only read with the opt-in, whole, through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framefarm.errors import InputError
from framefarm.renderers.models.detect import detect_weights
from framefarm.renderers.models.hashing import short_hash
from framefarm.renderers.models.library import ModelEntry
from framefarm.renderers.models.safetensors_io import (
    StreamingWriter, read_header, tensor_bytes, torch_dtype_name,
)

MODES = ("weighted-sum", "add-difference")


@dataclass(frozen=True)
class MergeResult:
    """What a merge wrote."""

    path: Path
    tensors: int
    merged: int
    copied: int
    base: str


class _Source:
    """Tensors of one input by name: lazily from a safetensors file, or from an opted-in pickle in memory."""

    def __init__(self, entry: ModelEntry, stack: ExitStack, *, allow_pickle: bool) -> None:
        self.entry = entry
        if entry.format == "safetensors":
            from safetensors import safe_open

            header = read_header(entry.path)
            self.shapes = {k: v.shape for k, v in header.tensors.items()}
            self.order = list(header.tensors)
            self._handle = stack.enter_context(safe_open(entry.path, framework="pt", device="cpu"))
            self._memory = None
        elif entry.format == "pickle":
            from framefarm.renderers.models.loader import read_state_dict

            self._memory = read_state_dict(entry, allow_pickle=allow_pickle)
            self.shapes = {k: tuple(v.shape) for k, v in self._memory.items()}
            self.order = list(self._memory)
            self._handle = None
        else:
            raise InputError("merge input", entry.name, "is a diffusers folder",
                             "Merge single-file checkpoints (.safetensors)")

    def get(self, key: str):
        return self._memory[key] if self._memory is not None else self._handle.get_tensor(key)


def merge_checkpoints(a: ModelEntry, b: ModelEntry, c: ModelEntry | None, *, mode: str, alpha: float, out: Path,
                      allow_pickle: bool = False, progress: Callable[[int, int], None] | None = None) -> MergeResult:
    """Merge checkpoints into ``out`` (a ``.safetensors`` file). See the module docstring for the formulas."""
    # 1. Check inputs.
    if mode not in MODES:
        raise InputError("--mode", mode, "is not a merge mode", f"Use one of: {', '.join(MODES)}")
    if mode == "add-difference" and c is None:
        raise InputError("C", problem="is needed by add-difference (A + (B − C)·alpha)",
                         fix="Pass a third checkpoint: framefarm models merge A B C --mode add-difference")
    if mode == "weighted-sum" and c is not None:
        raise InputError("C", c.name, "is only used by add-difference", "Drop it, or pass --mode add-difference")
    if not 0.0 <= alpha <= 1.0 and mode == "weighted-sum":
        raise InputError("--alpha", alpha, "must be between 0 and 1 for a weighted sum")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise InputError("-o", str(out), "must end in .safetensors")
    if any(Path(e.path).resolve() == out.resolve() for e in (a, b, c) if e is not None):
        raise InputError("-o", str(out), "is one of the inputs", "Write the merge to a new file")

    with ExitStack() as stack:
        sources = [_Source(e, stack, allow_pickle=allow_pickle) for e in (a, b, c) if e is not None]
        bases = [detect_weights(list(s.shapes), s.shapes.get) for s in sources]
        if any(d.kind != "checkpoint" for d in bases):
            bad = next(s.entry.name for s, d in zip(sources, bases) if d.kind != "checkpoint")
            raise InputError("merge input", bad, "is not a full checkpoint")
        if len({d.base for d in bases}) != 1:
            raise InputError("merge inputs", ", ".join(f"{s.entry.name} ({d.base})" for s, d in zip(sources, bases)),
                             "mix model families", "Merge checkpoints of one family (all SD1.5, or all SDXL)")

        # 2. Plan the output: A's tensors, A's dtypes and shapes.
        first = sources[0]
        plan = {}
        for key in first.order:
            tensor_dtype = first.get(key).dtype
            plan[key] = (torch_dtype_name(tensor_dtype), tuple(first.shapes[key]))
        recipe = {"mode": mode, "alpha": alpha,
                  "inputs": [{"name": s.entry.name, "short_hash": short_hash(s.entry.path)} for s in sources]}
        writer = StreamingWriter(out, plan, metadata={"framefarm_merge": json.dumps(recipe), "format": "pt"})

        # 3. Merge tensor by tensor.
        merged = copied = 0
        try:
            for index, key in enumerate(first.order):
                ta = first.get(key)
                others = [s for s in sources[1:] if s.shapes.get(key) == first.shapes[key]]
                if len(others) == len(sources) - 1 and ta.is_floating_point():
                    x = ta.float()
                    if mode == "weighted-sum":
                        result = x * (1.0 - alpha) + others[0].get(key).float() * alpha
                    else:
                        result = x + (others[0].get(key).float() - others[1].get(key).float()) * alpha
                    result = result.to(ta.dtype)
                    merged += 1
                else:
                    result = ta
                    copied += 1
                writer.write(key, tensor_bytes(result))
                if progress is not None:
                    progress(index + 1, len(first.order))
            path = writer.close()
        except BaseException:
            writer.abort()
            raise
    return MergeResult(path=path, tensors=len(plan), merged=merged, copied=copied, base=bases[0].base)


def describe(result: MergeResult) -> dict[str, Any]:
    return {"path": str(result.path), "tensors": result.tensors, "merged": result.merged, "copied": result.copied,
            "base": result.base}
