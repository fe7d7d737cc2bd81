"""The frame writer pool: same bytes and records as writing inline, bounded in flight, keeps frames on a failure."""

from __future__ import annotations

import numpy as np
import pytest

from framefarm.images import encode_png
from framefarm.storage import FrameStore
from framefarm.storage.writer_pool import FrameWriterPool


def _frames(n: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    return {i: rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for i in range(n)}


def test_pool_writes_the_same_bytes_as_inline_commits(tmp_path):
    frames = _frames(12)
    inline = FrameStore(str(tmp_path / "inline"), "job")
    for i, image in frames.items():
        inline.commit_frame(i, encode_png(image), key=f"k{i}", seed=i, width=24, height=16)
    pooled = FrameStore(str(tmp_path / "pooled"), "job")
    with FrameWriterPool(pooled, encode_png, threads=3, max_pending=2) as writer:
        for i, image in frames.items():
            writer.submit(i, image, key=f"k{i}", seed=i, width=24, height=16)
    assert writer.close() == list(frames)
    assert {i: r.sha256 for i, r in pooled.records().items()} == {i: r.sha256 for i, r in inline.records().items()}
    assert all(pooled.read_frame_bytes(i) == inline.read_frame_bytes(i) for i in frames)


def test_a_failed_render_keeps_the_frames_handed_over(tmp_path):
    store = FrameStore(str(tmp_path), "job")
    with pytest.raises(RuntimeError, match="GPU fell over"):
        with FrameWriterPool(store, encode_png, threads=2) as writer:
            for i, image in _frames(3).items():
                writer.submit(i, image, key=f"k{i}", seed=i, width=24, height=16)
            raise RuntimeError("GPU fell over")
    assert sorted(store.records()) == [0, 1, 2]


def test_an_encode_error_surfaces_on_close(tmp_path):
    store = FrameStore(str(tmp_path), "job")
    writer = FrameWriterPool(store, encode_png, threads=1)
    writer.submit(0, np.zeros((4, 4), np.float32), key="k", seed=0, width=4, height=4)
    with pytest.raises(Exception, match="uint8"):
        writer.close()
