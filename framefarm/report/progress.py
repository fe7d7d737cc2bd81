"""Live progress of jobs in a store, from the store alone: frames done, the latest one, frame rate and ETA.

The per-frame records are the truth about finished frames (the progress bar of ``framefarm render`` counts them
too); their modification times give the recent frame rate. One listing per job, no reads, so it is cheap on S3.
What ``framefarm status`` shows for renders that are not on the Prefect farm.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from framefarm.report.collect import listing, mtime, variation_names
from framefarm.storage import FrameStore
from framefarm.storage.atomic import TEMP_MARKER

# A job whose last frame is older than this (and that is not complete) is shown as stopped, not running.
STALL_S = 120.0
RATE_WINDOW = 64  # the most recent frames the rate is measured over

StoreState = Literal["complete", "running", "stopped", "empty"]


@dataclass(frozen=True)
class StoreProgress:
    """Where one job in a store stands.

    Attributes:
        job: the job's name.
        root: the store root.
        frames: frames planned, as stored (from ``plan.json``, else ``job.json``; a job with variations stores each
            frame once per variation).
        done: frames finished (stored frames).
        state: ``complete`` (manifest written), ``running`` (a frame finished in the last ``STALL_S`` seconds),
            ``stopped`` (incomplete and idle: interrupted, failed, or waiting), ``empty`` (no frame yet).
        latest: the most recently finished frame.
        last_activity: when it finished (epoch seconds).
        rate: frames per second over the most recent frames (``None`` with fewer than two).
        eta_seconds: seconds left at that rate (running jobs only).
    """

    job: str
    root: str
    frames: int
    done: int
    state: StoreState
    latest: int | None
    last_activity: float | None
    rate: float | None
    eta_seconds: float | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.frames) if self.frames else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "progress": self.fraction}


def _planned(store: FrameStore) -> int:
    """Stored frames planned: plan.json counts them; job.json's ``frames`` is the animation's length, which a job
    with variations stores once per variation (frame t of variation v at t·V + v)."""
    for name in ("plan.json", "job.json"):
        try:
            document = store.read_json(name)
        except (FileNotFoundError, ValueError):
            continue
        if isinstance(document, dict) and isinstance(document.get("frames"), int):
            if name == "plan.json":
                return int(document["frames"])
            return int(document["frames"]) * max(1, len(variation_names(document)))
    return 0


def store_progress(root: str, job: str, *, now: float | None = None, stall_s: float = STALL_S) -> StoreProgress:
    """Progress of ``job`` under ``root`` (see :class:`StoreProgress`)."""
    store = FrameStore(root, job)
    now = time.time() if now is None else now
    frames = _planned(store)
    times = sorted(
        (mtime(entry), int(stem))
        for entry in listing(store, store.manifest_dir)
        if (name := posixpath.basename(str(entry.get("name", "")))).endswith(".json") and TEMP_MARKER not in name
        and (stem := name.split(".", 1)[0]).isdigit()
    )
    done = min(frames, len(times)) if frames else len(times)
    latest = times[-1][1] if times else None
    last = times[-1][0] if times and times[-1][0] > 0 else None
    rate = None
    recent = [t for t, _ in times[-RATE_WINDOW:] if t > 0]
    if len(recent) >= 2 and recent[-1] > recent[0]:
        rate = (len(recent) - 1) / (recent[-1] - recent[0])
    if store.exists("manifest.json") and done >= frames:
        state: StoreState = "complete"
    elif not times:
        state = "empty"
    elif last is not None and now - last <= stall_s:
        state = "running"
    else:
        state = "stopped"
    eta = (frames - done) / rate if state == "running" and rate else None
    return StoreProgress(job=job, root=root, frames=frames, done=done, state=state, latest=latest,
                         last_activity=last, rate=rate, eta_seconds=eta)


def job_names(root: str) -> list[str]:
    """The job folders under a store root (folders holding ``job.json``), in name order."""
    import fsspec

    fs, base = fsspec.core.url_to_fs(str(root))
    fs.invalidate_cache(base)
    try:
        entries = fs.ls(base, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = []
    for entry in entries:
        if entry.get("type") != "directory":
            continue
        name = posixpath.basename(str(entry["name"]).rstrip("/"))
        if name.startswith(".") or not fs.exists(posixpath.join(str(entry["name"]), "job.json")):
            continue
        names.append(name)
    return sorted(names)


def scan(root: str, *, now: float | None = None, stall_s: float = STALL_S) -> list[StoreProgress]:
    """Progress of every job under ``root``."""
    now = time.time() if now is None else now
    return [store_progress(root, name, now=now, stall_s=stall_s) for name in job_names(root)]
