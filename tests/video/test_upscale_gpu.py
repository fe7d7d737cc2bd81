"""ESRGAN-family upscaling through the real spandrel, on a CUDA GPU, fp16 (skipped without both).

No weights are downloaded: spandrel's own architecture classes are built with seeded random weights and saved as
``.pth`` files, which spandrel then has to recognise (architecture, scale) from the state dict alone.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
spandrel = pytest.importorskip("spandrel")  # optional: needs torchvision (see docs/finishing.md)

from framefarm.video.upscale import make_upscaler, parse_upscale  # noqa: E402
from tests.video.conftest import pattern_frames  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def save_random(model, path):
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("arch,scale,overlap", [("compact", 2, 16), ("esrgan", 4, 48)])
def test_spandrel_model_runs_tiled_batched_fp16_on_the_gpu(tmp_path, arch, scale, overlap):
    if arch == "compact":
        from spandrel.architectures.Compact import Compact

        model = Compact(num_feat=32, num_conv=8, upscale=scale)
    else:
        from spandrel.architectures.ESRGAN import ESRGAN

        model = ESRGAN(num_filters=16, num_blocks=2, scale=scale)
    weights = save_random(model, tmp_path / f"{arch}.pth")
    upscaler = make_upscaler(parse_upscale(str(weights)))
    runner = upscaler.model
    assert upscaler.scale == scale and runner.device.type == "cuda" and runner.dtype == torch.float16
    frames = pattern_frames(3, 300, 200)
    runner.tile, runner.overlap, runner.batch = 128, overlap, 8
    tiled = list(upscaler(iter(frames), 300, 200))
    assert len(tiled) == 3 and tiled[0].shape == (200 * scale, 300 * scale, 3)
    runner.tile = 0
    whole = runner.upscale_batch(frames)
    worst = max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(tiled, whole))
    assert worst <= 2, worst  # fp16 rounding only: no seams
