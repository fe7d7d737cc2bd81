"""The one temp-then-rename helper: the target is whole or untouched, and no temp file is left behind."""

from __future__ import annotations

import os

import fsspec
import pytest

from framefarm.storage.atomic import TEMP_MARKER, atomic_path, atomic_write_bytes, atomic_write_text, publish


def test_atomic_write_bytes_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "frame.json"
    atomic_write_bytes(fsspec.filesystem("file"), str(target), b"one")
    atomic_write_bytes(fsspec.filesystem("file"), str(target), b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["frame.json"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as temp:
        temp.write_text("half")
        assert TEMP_MARKER in temp.name
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_caller_chosen_temp_name(tmp_path):
    target = tmp_path / "job.json"
    chosen = target.with_suffix(".json.tmp")
    with atomic_path(target, temp=chosen) as temp:
        assert temp == chosen
        temp.write_text("{}")
    assert target.read_text() == "{}" and not chosen.exists()


def test_publish_folder_replaces_old_folder(tmp_path):
    old, new = tmp_path / "frames", tmp_path / "frames.partial"
    old.mkdir()
    (old / "a.png").write_bytes(b"old")
    new.mkdir()
    (new / "b.png").write_bytes(b"new")
    publish(new, old)
    assert sorted(os.listdir(old)) == ["b.png"]
    assert sorted(os.listdir(tmp_path)) == ["frames"]
