"""Checkpoint merging and the streaming safetensors writer."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from framefarm.errors import InputError
from framefarm.renderers.models.library import ModelLibrary
from framefarm.renderers.models.merge import merge_checkpoints
from framefarm.renderers.models.safetensors_io import StreamingWriter, read_header, tensor_bytes


def test_streaming_writer_round_trips_every_dtype(tmp_path):
    tensors = {"a": torch.randn(3, 5), "b": torch.arange(7, dtype=torch.int64), "c": torch.randn(2, 2).half(),
               "d": torch.randn(4).bfloat16(), "e": torch.tensor(1.5)}
    plan = {k: ({torch.float32: "F32", torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16"}[v.dtype],
                tuple(v.shape)) for k, v in tensors.items()}
    writer = StreamingWriter(tmp_path / "x.safetensors", plan, metadata={"who": "test"})
    for key, value in tensors.items():
        writer.write(key, tensor_bytes(value))
    path = writer.close()
    loaded = load_file(path)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert read_header(path).metadata == {"who": "test"}
    with pytest.raises(ValueError, match="plan order"):
        StreamingWriter(tmp_path / "y.safetensors", plan).write("b", b"")


def test_weighted_sum_and_add_difference_are_a1111s_formulas(tiny_library, tmp_path):
    library = ModelLibrary.scan(tiny_library.root)
    a = library.find("checkpoint", "tiny-sd15", field="A")
    b = library.find("checkpoint", "tiny-sd15-b", field="B")
    ta, tb = load_file(a.path), load_file(b.path)
    out = merge_checkpoints(a, b, None, mode="weighted-sum", alpha=0.3, out=tmp_path / "ws.safetensors")
    merged = load_file(out.path)
    assert list(merged) == list(load_file(a.path)) or set(merged) == set(ta)
    assert out.merged == len(ta) and out.copied == 0
    for key in ta:
        assert torch.equal(merged[key], ta[key] * 0.7 + tb[key] * 0.3)
    diff = merge_checkpoints(a, b, a, mode="add-difference", alpha=0.5, out=tmp_path / "ad.safetensors")
    added = load_file(diff.path)
    for key in list(ta)[:20]:
        assert torch.equal(added[key], ta[key] + (tb[key] - ta[key]) * 0.5)
    with safe_open(str(diff.path), framework="pt") as handle:
        recipe = json.loads(handle.metadata()["framefarm_merge"])
    assert recipe["mode"] == "add-difference" and [i["name"] for i in recipe["inputs"]] == [a.name, b.name, a.name]


def test_tensors_b_lacks_are_copied_from_a(tiny_library, tmp_path):
    library = ModelLibrary.scan(tiny_library.root)
    a = library.find("checkpoint", "tiny-sd15", field="A")
    partial = load_file(tiny_library.sd15_b)
    dropped = [k for k in partial if k.startswith("first_stage_model.")]
    for key in dropped:
        del partial[key]
    path = tmp_path / "lib" / "Stable-diffusion" / "partial.safetensors"
    path.parent.mkdir(parents=True)
    save_file(partial, path)
    b = ModelLibrary.scan(tmp_path / "lib").find("checkpoint", "partial", field="B")
    result = merge_checkpoints(a, b, None, mode="weighted-sum", alpha=0.5, out=tmp_path / "m.safetensors")
    assert result.copied == len(dropped)
    merged, original = load_file(result.path), load_file(a.path)
    assert all(torch.equal(merged[k], original[k]) for k in dropped)


def test_merge_refuses_bad_requests(tiny_library, tmp_path):
    library = ModelLibrary.scan(tiny_library.root)
    sd15 = library.find("checkpoint", "tiny-sd15", field="A")
    sdxl = library.find("checkpoint", "tiny-sdxl", field="B")
    with pytest.raises(InputError, match="mix model families"):
        merge_checkpoints(sd15, sdxl, None, mode="weighted-sum", alpha=0.5, out=tmp_path / "x.safetensors")
    with pytest.raises(InputError, match="is needed by add-difference"):
        merge_checkpoints(sd15, sd15, None, mode="add-difference", alpha=0.5, out=tmp_path / "x.safetensors")
    with pytest.raises(InputError, match="is not a merge mode"):
        merge_checkpoints(sd15, sd15, None, mode="average", alpha=0.5, out=tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
