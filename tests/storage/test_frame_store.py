"""Frame store: atomic commits, the manifest as the truth, corruption detection."""

from __future__ import annotations

import os

import pytest

from framefarm.errors import InputError
from framefarm.storage import FrameStore
from framefarm.storage.atomic import atomic_write


def commit(store: FrameStore, index: int, data: bytes = b"png-bytes", key: str = "k") -> None:
    store.commit_frame(index, data, key=key, seed=index, width=8, height=8)


def test_commit_writes_frame_then_record(tmp_path):
    store = FrameStore(str(tmp_path), "job")
    commit(store, 3, b"abc", key="key3")
    assert (tmp_path / "job/frames/000003.png").read_bytes() == b"abc"
    record = store.records()[3]
    assert record.key == "key3" and record.seed == 3 and record.path == "frames/000003.png"
    assert record.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_interrupted_write_leaves_no_frame_and_no_record(tmp_path, monkeypatch):
    store = FrameStore(str(tmp_path), "job")

    def half_then_crash(handle):
        handle.write(b"first half of a png")
        raise OSError("disk went away")

    monkeypatch.setattr(
        "framefarm.storage.frame_store.atomic_write_bytes",
        lambda fs, path, data: atomic_write(fs, path, half_then_crash),
    )
    with pytest.raises(OSError, match="disk went away"):
        commit(store, 0)
    assert store.records() == {}
    assert store.done_frames({0: "k"}) == set()
    leftovers = os.listdir(tmp_path / "job/frames")
    assert leftovers == []  # neither the final name nor the temp file


def test_a_frame_file_without_record_is_not_done(tmp_path):
    store = FrameStore(str(tmp_path), "job")
    (tmp_path / "job/frames").mkdir(parents=True)
    (tmp_path / "job/frames/000000.png").write_bytes(b"left over from a crash")
    assert store.done_frames({0: "k"}) == set()


def test_a_record_with_another_key_is_stale(tmp_path):
    store = FrameStore(str(tmp_path), "job")
    commit(store, 0, key="old-plan")
    assert store.done_frames({0: "new-plan"}) == set()
    assert store.done_frames({0: "old-plan"}) == {0}


def test_verify_finds_missing_and_corrupted_frames(tmp_path):
    store = FrameStore(str(tmp_path), "job")
    for i in range(3):
        commit(store, i, f"frame {i}".encode())
    (tmp_path / "job/frames/000001.png").write_bytes(b"bit rot")
    assert store.verify_frames({0: "k", 1: "k", 2: "k", 3: "k"}) == [1, 3]


def test_temp_files_are_ignored_by_readers(tmp_path):
    store = FrameStore(str(tmp_path), "job")
    commit(store, 0)
    (tmp_path / "job/manifest/.tmp-deadbeef-000001.json").write_text("{half")
    assert set(store.records()) == {0}
    assert store.count_records() == 1


def test_unfinished_writes_of_a_stopped_run_are_removed_and_finished_frames_kept(tmp_path):
    store = FrameStore(str(tmp_path), "job")
    commit(store, 0)
    (tmp_path / "job/frames/.tmp-deadbeef-000001.png").write_bytes(b"half a png")
    (tmp_path / "job/manifest/.tmp-deadbeef-000001.json").write_text("{half")
    assert store.remove_unfinished_writes() == 2
    assert sorted(p.name for p in (tmp_path / "job/frames").iterdir()) == ["000000.png"]
    assert sorted(p.name for p in (tmp_path / "job/manifest").iterdir()) == ["000000.json"]
    assert store.read_frame_bytes(0) == b"png-bytes"
    assert FrameStore(str(tmp_path), "never-rendered").remove_unfinished_writes() == 0


def test_manifest_json_lists_planned_frames_in_order(tmp_path):
    store = FrameStore(str(tmp_path), "job")
    for i in (2, 0, 1):
        commit(store, i)
    commit(store, 5, key="not planned")
    store.write_manifest({0: "k", 1: "k", 2: "k"}, {"video": "v.mp4"})
    manifest = store.read_json("manifest.json")
    assert [f["index"] for f in manifest["frames"]] == [0, 1, 2]
    assert manifest["video"] == "v.mp4"


@pytest.mark.parametrize("name", ["", "..", "a/b", "a\\b"])
def test_job_names_that_would_leave_the_root_are_refused(tmp_path, name):
    with pytest.raises(InputError, match="cannot be used as a folder name"):
        FrameStore(str(tmp_path), name)
