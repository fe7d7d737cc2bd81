"""Reading many records lists the manifest folder first and reads only those that exist, with the same answer as
reading them one by one."""

from __future__ import annotations

from framefarm.storage import FrameStore
from framefarm.storage.frame_store import LIST_FIRST_ABOVE


def test_many_records_are_read_through_one_listing(tmp_path):
    store = FrameStore(str(tmp_path), "many")
    frames = range(LIST_FIRST_ABOVE + 200)
    for index in (0, 7, LIST_FIRST_ABOVE + 199):
        store.commit_frame(index, b"png", key=f"k{index}", seed=index, width=8, height=8)
    (tmp_path / "many" / "manifest" / "notes.json").write_text("{}")  # not a frame record: ignored
    keys = {i: f"k{i}" for i in frames}
    assert sorted(store.read_records(frames)) == [0, 7, LIST_FIRST_ABOVE + 199]
    assert store.done_frames(keys) == {0, 7, LIST_FIRST_ABOVE + 199}
    assert store.read_records([7, 8]) == {7: store.read_records(frames)[7]}  # the small path agrees
