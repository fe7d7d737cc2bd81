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


def test_a_listing_in_this_process_never_hides_frames_another_process_commits(s3_bucket):
    # The flow's process lists the manifest (a progress bar, the API's status) while render processes commit the
    # frames. s3fs answers cat_file, info and exists from a cached listing of the folder when it has one, so reads
    # of frames committed after that listing failed with FileNotFoundError without asking the store: the verify step
    # took finished frames for missing ones, and its repair deleted their PNGs but kept their records.
    store = FrameStore(s3_bucket, f"job-{uuid.uuid4().hex[:8]}")
    store.commit_frame(0, b"frame 0", key="k", seed=0, width=8, height=8)
    assert store.count_records() == 1  # this process has now listed manifest/
    store.fs.ls(store.frames_dir)  # and frames/
    render_process = FrameStore(s3_bucket, store.job, skip_instance_cache=True)  # its own S3 client, as a process
    render_process.commit_frame(1, b"frame 1", key="k", seed=1, width=8, height=8)
    keys = {0: "k", 1: "k"}
    assert store.done_frames(keys) == {0, 1}
    assert store.verify_frames(keys) == []
    assert store.read_frame_bytes(1) == b"frame 1"
    store.remove_frames([1])  # the repair pass: the record goes, and with it the frame
    assert render_process.read_records([1]) == {}
    assert not render_process.fs.exists(render_process.frame_path(1))
