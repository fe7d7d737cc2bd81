"""The frame store on a real S3-compatible server (SeaweedFS), through fsspec/s3fs, as on a farm."""

from __future__ import annotations

import uuid

import pytest

from framefarm.storage import FrameStore

pytestmark = pytest.mark.slow


def test_commit_list_and_verify_on_s3(s3_bucket):
    store = FrameStore(s3_bucket, f"job-{uuid.uuid4().hex[:8]}")
    for i in range(3):
        store.commit_frame(i, f"frame {i}".encode(), key="k", seed=i, width=8, height=8)
    assert sorted(store.records()) == [0, 1, 2]
    assert store.count_records() == 3
    assert store.verify_frames({0: "k", 1: "k", 2: "k", 3: "k"}) == [3]
    # Another process writing to the same job is seen at once (no stale listing cache).
    other = FrameStore(s3_bucket, store.job)
    other.commit_frame(3, b"frame 3", key="k", seed=3, width=8, height=8)
    assert store.count_records() == 4
    assert store.local_path("frames") is None
