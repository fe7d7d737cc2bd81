"""Damage to the store: a corrupted frame file is detected by its SHA-256 and rendered again, and a full disk
(``ENOSPC`` from ``write``) fails the job clearly while every frame finished before it stays intact; once there is
room again, the job resumes to frames identical to a clean render."""

from __future__ import annotations

import builtins
import errno
import random
import threading

import pytest

from framefarm.errors import RenderError
from framefarm.flows.render import render_job
from framefarm.job import job_from_preset
from framefarm.storage import FrameStore
from framefarm.storage import atomic
from framefarm.storage.atomic import TEMP_MARKER
from tests.faults.conftest import fault_trials, frame_hashes

pytestmark = pytest.mark.usefixtures("prefect_server")

FRAMES = 16


def tunnel(name: str):
    job = job_from_preset("zoom-tunnel", [f"frames={FRAMES}", "width=96", "height=96", f"name={name}",
                                          "farm.chunk_retries=0", "farm.max_parallel_chunks=2"])
    # The faults here patch this process's writer (ENOSPC): chunks render in the flow's threads, not in a render
    # process, so the patch reaches them.
    return job.model_copy(update={"farm": job.farm.model_copy(update={"chunk_timeout": None})})


@pytest.fixture(scope="module")
def clean_hashes(tmp_path_factory, prefect_server):
    out = tmp_path_factory.mktemp("clean")
    render_job(tunnel("damage"), out=str(out), chunk_size=4)
    hashes = frame_hashes(out / "damage" / "frames")
    assert len(hashes) == FRAMES
    return hashes


@pytest.fixture(scope="module")
def frame_bytes(clean_hashes, tmp_path_factory) -> int:
    """Mean size of a frame file of this job, so disk budgets can be set in frames."""
    frames = list(tmp_path_factory.getbasetemp().glob("clean*/damage/frames/[0-9]*.png"))
    return sum(p.stat().st_size for p in frames) // len(frames)


# ----- corrupted frames


def _flip_a_byte(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


CORRUPTIONS = {
    "flipped byte": _flip_a_byte,
    "truncated": lambda data, rng: data[: rng.randrange(1, len(data))],
    "emptied": lambda data, rng: b"",
    "another frame": None,  # a valid PNG, but not this frame: only the hash can tell
}


def test_corrupted_frames_are_detected_by_hash_and_rendered_again(tmp_path, clean_hashes, fault_log):
    job = tunnel("damage")
    render_job(job, out=str(tmp_path), chunk_size=4)
    frames = tmp_path / job.name / "frames"
    rng = random.Random(1129)
    for trial in range(fault_trials()):
        kind = list(CORRUPTIONS)[trial % len(CORRUPTIONS)]
        victims = sorted(rng.sample(range(FRAMES), rng.randint(1, 3)))
        for index in victims:
            path = frames / f"{index:06d}.png"
            if CORRUPTIONS[kind] is None:
                path.write_bytes((frames / f"{(index + 1) % FRAMES:06d}.png").read_bytes())
            else:
                path.write_bytes(CORRUPTIONS[kind](path.read_bytes(), rng))
        assert FrameStore(str(tmp_path), job.name).verify_frames(
            {i: r.key for i, r in FrameStore(str(tmp_path), job.name).records().items()}) == victims
        result = render_job(job, out=str(tmp_path), chunk_size=4)
        assert result.rendered == len(victims)  # just the damaged ones
        after = frame_hashes(frames)
        assert after == clean_hashes
        fault_log.trial(f"corrupted frame file ({kind})", survived=True, frames_lost=0,
                        outcome="detected by hash, re-rendered, identical", frames_damaged=len(victims))


# ----- a full disk


class FullDisk:
    """Files opened for writing through framefarm's atomic writer get ``budget`` bytes in all; past that, ``write``
    raises ``OSError(ENOSPC)``, as the kernel does on a full file system."""

    def __init__(self, budget: int) -> None:
        self.left = budget
        self.lock = threading.Lock()
        self.refused = 0

    def open(self, path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)
        return _Limited(handle, self) if "w" in mode or "a" in mode else handle

    def take(self, size: int) -> None:
        with self.lock:
            if size > self.left:
                self.refused += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            self.left -= size


class _Limited:
    def __init__(self, handle, disk: FullDisk) -> None:
        self._handle, self._disk = handle, disk

    def write(self, data) -> int:
        self._disk.take(len(data))
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


def test_a_full_disk_fails_clearly_keeps_finished_frames_and_resumes(tmp_path, clean_hashes, frame_bytes,
                                                                        monkeypatch, fault_log):
    rng = random.Random(28)
    for trial in range(fault_trials()):
        out = tmp_path / f"trial{trial}"
        job = tunnel("damage")
        disk = FullDisk(int(frame_bytes * rng.uniform(1, FRAMES - 2)))  # room for 1…14 frames
        with monkeypatch.context() as patch:
            patch.setattr(atomic, "open", disk.open, raising=False)  # the module's writes, nobody else's
            with pytest.raises((RenderError, OSError), match="No space left on device"):
                render_job(job, out=str(out), chunk_size=4)
        assert disk.refused >= 1
        store = FrameStore(str(out), job.name)
        finished = store.records()
        # Finished frames are intact and identical to the clean render; no half-written file is left behind.
        assert store.verify_frames({i: r.key for i, r in finished.items()}) == []
        now = frame_hashes(out / job.name / "frames")
        lost = sum(now[f"{i:06d}.png"] != clean_hashes[f"{i:06d}.png"] for i in finished)
        assert lost == 0
        assert not [p for p in out.rglob("*") if TEMP_MARKER in p.name]
        # Room again: the rerun renders only what is missing.
        result = render_job(job, out=str(out), chunk_size=4)
        assert result.rendered == FRAMES - len(finished)
        assert frame_hashes(out / job.name / "frames") == clean_hashes
        fault_log.trial("disk full (ENOSPC)", survived=True, frames_lost=lost,
                        outcome="clear failure, finished frames kept, resume identical", finished=len(finished))
