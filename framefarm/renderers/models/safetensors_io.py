"""Reading and writing ``.safetensors`` files: headers without torch, tensors one at a time, a streaming writer.

The format (https://github.com/huggingface/safetensors, "Format"): 8 bytes little-endian header length ``N``, then
``N`` bytes of JSON mapping each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into
the byte buffer that follows the header), plus an optional ``"__metadata__"`` table of strings.

Why our own header reader and not ``safetensors.safe_open(path, framework="np")`` (which also needs no torch and
gives the same keys, shapes, dtypes and metadata for a sound file; checked against safetensors 0.8):
- a damaged file must be reported, saying which tensor lies outside the file: ``safe_open`` only says "incomplete
  metadata, file not fully covered" or "invalid JSON in header", and ``framefarm models`` lists damaged files;
- a merge writes its tensors in the first file's header order, and ``safe_open`` gives names sorted
  (``keys()``) or in byte order (``offset_keys()``), neither of them that order in every file, so the merged file's
  bytes would change;
- it does not expose data offsets, which the checks above need.
Tensors themselves are read with ``safe_open`` (:func:`load_tensors`), after this header check.
Why our own writer: merging two SDXL checkpoints tensor by tensor (``framefarm models merge``) must not hold either
in memory; ``safetensors.torch.save_file`` needs every tensor at once.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framefarm.errors import InputError
from framefarm.storage.atomic import discard, publish

# A header bigger than this is not a real file's (the largest real checkpoints' headers are a few MB): refusing it
# keeps a damaged length field from making us allocate gigabytes.
MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a safetensors header."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A parsed header: tensors by name, and the file's string metadata."""

    path: str
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    def keys(self) -> list[str]:
        return list(self.tensors)

    def shape(self, key: str) -> tuple[int, ...] | None:
        info = self.tensors.get(key)
        return None if info is None else info.shape


def corrupt(path: str | Path, problem: str) -> InputError:
    """The error for a damaged or truncated weights file: it names the file and says what to do."""
    return InputError("model file", str(path), f"is not a valid .safetensors file: {problem}",
                      "Download or copy the file again (it is damaged or incomplete), or remove it")


def read_header(path: str | Path) -> SafetensorsHeader:
    """Parse and check the header of a ``.safetensors`` file, touching nothing past it.

    Raises:
        InputError: the file is missing, truncated or not safetensors (the message names the file).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            raw_length = handle.read(8)
            if len(raw_length) < 8:
                raise corrupt(path, f"only {size} bytes long")
            (length,) = struct.unpack("<Q", raw_length)
            if length < 2 or length > MAX_HEADER_BYTES or 8 + length > size:
                raise corrupt(path, f"header length {length} does not fit a {size}-byte file")
            raw = handle.read(length)
    except OSError as exc:
        raise InputError("model file", str(path), f"cannot be read: {exc.strerror or exc}",
                         "Check the path and the file's permissions") from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise corrupt(path, f"header is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise corrupt(path, "header is not a JSON object")
    metadata = document.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise corrupt(path, "__metadata__ is not a table")
    data_size = size - 8 - length
    tensors: dict[str, TensorInfo] = {}
    for name, entry in document.items():
        try:
            dtype = entry["dtype"]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise corrupt(path, f"entry {name!r} lacks dtype, shape or data_offsets") from None
        count = 1
        for dim in shape:
            count *= dim
        if dtype not in DTYPE_SIZES or not 0 <= begin <= end <= data_size or end - begin != count * DTYPE_SIZES[dtype]:
            raise corrupt(path, f"tensor {name!r} ({dtype} {list(shape)}) lies outside the file or has the "
                                f"wrong byte size (the file may be truncated)")
        tensors[name] = TensorInfo(dtype, shape, begin, end)
    return SafetensorsHeader(str(path), tensors, {str(k): str(v) for k, v in metadata.items()})


def load_tensors(path: str | Path, keys: Iterable[str] | None = None, *, device: str = "cpu") -> dict[str, Any]:
    """Load tensors (all, or ``keys``) from a checked ``.safetensors`` file. Memory-mapped by safetensors."""
    from safetensors import SafetensorError, safe_open

    header = read_header(path)  # names the file if it is damaged, before safetensors' terse errors
    wanted = header.keys() if keys is None else list(keys)
    try:
        with safe_open(str(path), framework="pt", device=device) as handle:
            return {key: handle.get_tensor(key) for key in wanted}
    except SafetensorError as exc:
        raise corrupt(path, str(exc)) from None


class StreamingWriter:
    """Write a ``.safetensors`` file one tensor at a time, never holding more than one tensor in memory.

    The header needs every tensor's dtype and shape first; pass them in ``plan`` (name → (dtype, shape)) in file
    order, then call :meth:`write` for each name in that order. The file is written under a temporary name and
    renamed when :meth:`close` finds every tensor written, so a crash never leaves a half file under the real name.
    """

    def __init__(self, path: str | Path, plan: Mapping[str, tuple[str, tuple[int, ...]]],
                 metadata: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self._order = list(plan)
        self._sizes = {}
        header: dict[str, Any] = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        offset = 0
        for name, (dtype, shape) in plan.items():
            count = 1
            for dim in shape:
                count *= int(dim)
            nbytes = count * DTYPE_SIZES[dtype]
            header[name] = {"dtype": dtype, "shape": [int(d) for d in shape], "data_offsets": [offset, offset + nbytes]}
            self._sizes[name] = nbytes
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # the byte buffer starts 8-byte aligned, as safetensors writes it
        self._temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        self._handle = open(self._temp, "wb")
        self._handle.write(struct.pack("<Q", len(raw)))
        self._handle.write(raw)
        self._next = 0

    def write(self, name: str, data: bytes) -> None:
        """Append the raw little-endian bytes of tensor ``name`` (the next one in the plan's order)."""
        expected = self._order[self._next] if self._next < len(self._order) else None
        if name != expected:
            raise ValueError(f"tensors must be written in plan order: expected {expected!r}, got {name!r}")
        if len(data) != self._sizes[name]:
            raise ValueError(f"tensor {name!r} has {len(data)} bytes, the plan says {self._sizes[name]}")
        self._handle.write(data)
        self._next += 1

    def close(self) -> Path:
        """Finish the file and move it into place. Raises if a planned tensor was never written."""
        self._handle.close()
        if self._next != len(self._order):
            discard(self._temp)
            raise ValueError(f"only {self._next} of {len(self._order)} tensors were written")
        return publish(self._temp, self.path)

    def abort(self) -> None:
        self._handle.close()
        discard(self._temp)


def tensor_bytes(tensor: Any) -> bytes:
    """The raw bytes of a CPU torch tensor in safetensors' layout (C order, little endian)."""
    import torch

    tensor = tensor.detach().to("cpu").contiguous()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: view the bits as int16
        return tensor.view(torch.int16).numpy().tobytes()
    return tensor.numpy().tobytes()


def torch_dtype_name(dtype: Any) -> str:
    """``torch.float16`` → ``"F16"``."""
    import torch

    names = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
             torch.bool: "BOOL"}
    return names[dtype]

