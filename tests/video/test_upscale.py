"""Upscaling: Lanczos sizes, the tiled/batched model runner, and spandrel loading (faked: it needs torchvision)."""

from __future__ import annotations

import math
import sys
import types

import cv2
import numpy as np
import pytest

from framefarm.errors import InputError, RenderError
from framefarm.video.finish import finish
from framefarm.video.upscale import (ModelUpscaler, UpscaleSpec, make_upscaler, parse_upscale, tile_layout,
                                     tile_starts)
from tests.video.conftest import pattern_frames

torch = pytest.importorskip("torch")


def test_parse_upscale_specs(tmp_path):
    assert parse_upscale(None) is None and parse_upscale("1") is None
    assert parse_upscale("2") == UpscaleSpec("lanczos", 2.0)
    assert parse_upscale("lanczos:1.5") == UpscaleSpec("lanczos", 1.5)
    weights = tmp_path / "4x.pth"
    weights.write_bytes(b"")
    assert parse_upscale(str(weights)) == UpscaleSpec("model", 0.0, weights)
    with pytest.raises(InputError, match="no such model file"):
        parse_upscale(str(tmp_path / "missing.safetensors"))
    with pytest.raises(InputError, match="is not an upscale spec"):
        parse_upscale("bicubic:2")


def test_lanczos_upscale_through_finish(tmp_path):
    result = finish(pattern_frames(3, 64, 48), tmp_path, fps=25, upscale="lanczos:2", name="up")
    assert (result.width, result.height) == (128, 96)
    assert result.path.name == "up_128x96_25fps_3f.mp4"


def test_explicit_output_size_covers_and_crops(tmp_path):
    result = finish(pattern_frames(2, 64, 48), tmp_path / "clip", fps=25, width=96, height=96)
    assert (result.width, result.height) == (96, 96)


@pytest.mark.parametrize("length,tile,overlap", [(100, 128, 8), (540, 512, 16), (1080, 512, 16), (1920, 512, 16),
                                                 (3840, 256, 32), (513, 512, 16), (70, 32, 4)])
def test_tiles_are_balanced_and_cover_the_frame_with_overlap(length, tile, overlap):
    size, starts = tile_layout(length, tile, overlap)
    assert size <= tile and starts[0] == 0 and starts[-1] + size == length
    assert all(0 < b - a <= size - 2 * overlap for a, b in zip(starts, starts[1:]))
    if length > tile:  # the fewest tiles that fit
        assert len(starts) == math.ceil((length - 2 * overlap) / (tile - 2 * overlap))
    assert tile_starts(length, tile, overlap) == starts


def test_balanced_tiles_do_not_waste_work():
    assert tile_layout(540, 512, 16) == (286, [0, 254])


class ConvUpscaler(torch.nn.Module):
    """A stand-in ESRGAN: two 3x3 convolutions (receptive field 5 px) and a 2x pixel shuffle."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 12, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
        self.shuffle = torch.nn.PixelShuffle(2)

    def forward(self, x):
        return torch.sigmoid(self.shuffle(self.conv2(torch.relu(self.conv1(x)))))


def test_tiled_and_batched_output_equals_the_whole_frame_pass():
    model = ConvUpscaler().eval()
    frames = pattern_frames(3, 100, 70)
    whole = ModelUpscaler(model, 2, tile=0).upscale_batch(frames)
    tiled = list(ModelUpscaler(model, 2, tile=32, overlap=4, batch=5)(iter(frames), frames_per_batch=2))
    assert len(tiled) == 3 and tiled[0].shape == (140, 200, 3)
    for a, b in zip(whole, tiled):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # seams invisible: overlap ≥ receptive field


def test_nearest_model_reproduces_nearest_resize_and_keeps_alpha():
    model = torch.nn.Upsample(scale_factor=4, mode="nearest")
    frame = pattern_frames(1, 40, 30, alpha=True)[0]
    out = ModelUpscaler(model, 4, tile=16, overlap=2).upscale_batch([frame])[0]
    assert out.shape == (120, 160, 4)
    expected = cv2.resize(frame[..., :3], (160, 120), interpolation=cv2.INTER_NEAREST_EXACT)
    assert np.array_equal(out[..., :3], expected)


def _fake_spandrel(monkeypatch, descriptor_factory):
    module = types.ModuleType("spandrel")

    class ImageModelDescriptor:
        pass

    class ModelLoader:
        def load_from_file(self, path):
            return descriptor_factory(ImageModelDescriptor, path)

    module.ImageModelDescriptor = ImageModelDescriptor
    module.ModelLoader = ModelLoader
    monkeypatch.setitem(sys.modules, "spandrel", module)


def test_a_spandrel_model_upscales_through_finish(tmp_path, monkeypatch):
    def factory(base, path):
        class Descriptor(base):
            scale, supports_half, purpose = 2, True, "SR"
            tiling = types.SimpleNamespace(name="SUPPORTED")

            def __init__(self):
                self.model = ConvUpscaler().eval()

            def to(self, device):
                self.model.to(device)
                return self

            def eval(self):
                return self

            def half(self):
                raise AssertionError("fp16 only on CUDA")

            def __call__(self, image):
                return self.model(image)

        return Descriptor()

    _fake_spandrel(monkeypatch, factory)
    weights = tmp_path / "2x-compact.pth"
    weights.write_bytes(b"weights")
    result = finish(pattern_frames(2, 48, 32), tmp_path, fps=25, upscale=str(weights), name="esr")
    assert (result.width, result.height) == (96, 64) and result.verification.ok
    upscaler = make_upscaler(parse_upscale(str(weights)))
    assert upscaler.scale == 2 and upscaler.model.device.type == "cpu"


def test_a_model_that_is_not_an_upscaler_is_refused(tmp_path, monkeypatch):
    _fake_spandrel(monkeypatch, lambda base, path: types.SimpleNamespace(purpose="Inpainting"))
    weights = tmp_path / "lama.pth"
    weights.write_bytes(b"weights")
    with pytest.raises(InputError, match="is a model for Inpainting, not for upscaling"):
        finish(pattern_frames(2), tmp_path / "clip", fps=25, upscale=str(weights))


def test_missing_spandrel_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)  # import fails as if not installed
    weights = tmp_path / "4x.pth"
    weights.write_bytes(b"weights")
    with pytest.raises(RenderError, match="needs the optional package spandrel.*pip install spandrel"):
        finish(pattern_frames(2), tmp_path / "clip", fps=25, upscale=str(weights))
    assert not list(tmp_path.glob("clip*"))
