"""Everything a job report shows, read from the job's frame store (a local folder or any fsspec URL).

Reads only what the store holds: ``job.json``, ``plan.json``, ``manifest.json`` (absent while a job renders), the
per-frame records (a listing, no reads, when the job is still running), the finished video beside them and the
chunk timings (``timings.json``). Nothing here needs Prefect, and a store on S3 costs a handful of requests, not one
per frame.

A Deforum job with ``variations`` stores V takes of one animation interleaved: stored frame ``t·V + v`` is frame
``t`` of variation ``v`` (:mod:`framefarm.animation.plan`). Counts and progress here are of stored frames (what the
store holds and the plan lists); :class:`VariationInfo` says what belongs to each take.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framefarm.errors import InputError
from framefarm.storage import FrameStore
from framefarm.storage.atomic import TEMP_MARKER

TIMINGS_NAME = "timings.json"
TIMINGS_FORMAT = 1
PREVIEW_NAME = "report-preview.mp4"
PREVIEW_PREFIX = "report-preview"  # a variation's preview is report-preview_<variation>.mp4
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".gif", ".avi")
# What Chromium, Firefox and Safari all play in a <video> element (H.264 MP4, VP9 WebM) or show as <img> (GIF).
# The job's codec decides; HAP, ProRes, DNxHR and H.265 get a small H.264 preview beside the deliverable instead.
BROWSER_VIDEO_CODECS = {"h264": "video/mp4", "webm": "video/webm"}
BROWSER_IMAGE_CODECS = {"gif": "image/gif"}


@dataclass(frozen=True)
class ChunkTiming:
    """How long one chunk took, and where it ran (only ``index`` and ``seconds`` are required).

    Attributes:
        index: chunk number in the plan.
        seconds: wall time of the chunk task (0 for a chunk served from Prefect's cache).
        start, stop: its frame range (``stop`` exclusive); filled in from ``plan.json`` when left out.
        rendered, reused: frames rendered now and frames found already done.
        worker: who rendered it (host and GPU, ``$FRAMEFARM_WORKER_ID``).
        gpu: the device: its name (``"NVIDIA H200"``), or, from the render flow, the ``CUDA_VISIBLE_DEVICES`` its
            chunk ran with (``ChunkResult.visible_devices``).
        started, finished: ISO-8601 times.
        cached: served from Prefect's cache (nothing rendered).
    """

    index: int
    seconds: float
    start: int | None = None
    stop: int | None = None
    rendered: int | None = None
    reused: int | None = None
    worker: str | None = None
    gpu: str | None = None
    started: str | None = None
    finished: str | None = None
    cached: bool | None = None

    @classmethod
    def from_any(cls, item: Any) -> ChunkTiming:
        """From a dict (``timings.json``, the flow), an object with a ``to_json()`` row (the flow's ``ChunkResult``
        gives its ``chunks.json`` row, so both files hold the same values), or another dataclass.

        ``rendered`` and ``reused`` may be counts or lists of frame numbers.
        """
        if callable(getattr(item, "to_json", None)) and not isinstance(item, type):
            item = item.to_json()
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            item = dataclasses.asdict(item)
        if not isinstance(item, Mapping):
            raise InputError("chunk_timings", type(item).__name__, "each item must be a dict or a dataclass",
                             'Example: {"index": 0, "seconds": 12.5, "rendered": 16, "worker": "render01-gpu0"}')
        if "index" not in item or "seconds" not in item:
            raise InputError("chunk_timings", dict(item), "each item needs index and seconds")

        def count(value: Any) -> int | None:
            if value is None:
                return None
            return len(value) if isinstance(value, (list, tuple, set, frozenset, range)) else int(value)

        def text(value: Any) -> str | None:
            if value is None:
                return None
            return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else str(value)

        return cls(
            index=int(item["index"]), seconds=float(item["seconds"]),
            start=None if item.get("start") is None else int(item["start"]),
            stop=None if item.get("stop") is None else int(item["stop"]),
            rendered=count(item.get("rendered")), reused=count(item.get("reused")),
            worker=text(item.get("worker")), gpu=text(item.get("gpu")),
            started=text(item.get("started")), finished=text(item.get("finished")),
            cached=None if item.get("cached") is None else bool(item["cached"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class VideoFile:
    """The finished deliverable beside the frames.

    Attributes:
        name: file (or folder) name inside the job folder: the report links it by this relative name.
        location: its full path or URL.
        size: bytes (``None`` for a folder or when the store does not say).
        codec: the job's ``output.codec``.
        element: how a browser shows it: ``"video"``, ``"img"``, or ``None`` (HAP, ProRes, a PNG folder …).
        mime: the MIME type for ``element``.
    """

    name: str
    location: str
    size: int | None
    codec: str
    element: str | None
    mime: str | None


@dataclass(frozen=True)
class VariationInfo:
    """One take of a job with variations.

    Attributes:
        index: its place ``v`` in the job's ``variations``: its frames are stored frames ``t·V + v``.
        name: its own name, else ``v1``, ``v2``, … (as the job names its video ``<job>_<name>``).
        seed_offset: added to every seed of the animation.
        positive_prompt, negative_prompt: put after each frame's prompts.
        video: its video beside the frames (``None`` until encoded).
        preview: the H.264 preview the report made of it when the video can't play in a browser.
    """

    index: int
    name: str
    seed_offset: int
    positive_prompt: str
    negative_prompt: str
    video: VideoFile | None = None
    preview: VideoFile | None = None


@dataclass(frozen=True)
class ReportData:
    """What one report shows. Built by :func:`collect`."""

    job_name: str
    store: FrameStore
    job: dict[str, Any]
    plan: dict[str, Any] | None
    manifest: dict[str, Any] | None
    done: tuple[int, ...]
    latest: int | None
    video: VideoFile | None
    preview: VideoFile | None
    timings: tuple[ChunkTiming, ...]
    generated: str
    notes: tuple[str, ...] = field(default=())
    variations: tuple[VariationInfo, ...] = field(default=())  # empty for a job without variations

    @property
    def variation_count(self) -> int:
        """Takes stored interleaved (1 for a job without variations)."""
        return max(1, len(self.variations))

    @property
    def frames(self) -> int:
        """Frames planned, as stored: the animation's frames times its variations."""
        # plan.json counts stored frames already; job.json's ``frames`` is the animation's length.
        if self.plan and isinstance(self.plan.get("frames"), int):
            return int(self.plan["frames"])
        if isinstance(self.job.get("frames"), int):
            return int(self.job["frames"]) * self.variation_count
        return len(self.done)

    @property
    def time_steps(self) -> int:
        """Frames of the animation (of each variation): what schedules, prompts and the timeline count."""
        return -(-self.frames // self.variation_count)

    def variation_done(self, variation: int) -> list[int]:
        """Time steps ``t`` of ``variation`` that are finished (stored frame ``t·V + variation``)."""
        count = self.variation_count
        return [index // count for index in self.done if index % count == variation]

    @property
    def fps(self) -> float:
        for source in (self.plan, self.job):
            if source and source.get("fps"):
                return float(source["fps"])
        return 24.0

    @property
    def complete(self) -> bool:
        """The render finished: the consolidated manifest exists and holds every planned frame."""
        return self.manifest is not None and len(self.done) >= self.frames

    def seeds(self) -> list[int] | None:
        """Each frame's seed, from the plan (``None`` without a plan)."""
        if not self.plan or not self.plan.get("chunks"):
            return None
        seeds: list[int] = []
        for chunk in sorted(self.plan["chunks"], key=lambda c: c.get("start", 0)):
            seeds.extend(int(s) for s in chunk.get("seeds", ()))
        return seeds if len(seeds) == self.frames else None


def listing(store: FrameStore, folder: str) -> list[dict[str, Any]]:
    """A folder of the store with details (name, size, type, modification time); empty if it does not exist."""
    # Other workers write all the time: ask the store, not fsspec's listing cache.
    store.fs.invalidate_cache(folder)
    try:
        return list(store.fs.ls(folder, detail=True))
    except (FileNotFoundError, NotADirectoryError):
        return []


def mtime(info: Mapping[str, Any]) -> float:
    """Modification time of a listing entry, whatever the file system calls it (local: mtime; S3: LastModified)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created", "ctime"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


def _read_json(store: FrameStore, name: str) -> Any | None:
    try:
        return store.read_json(name)
    except FileNotFoundError:
        return None
    except ValueError:  # damaged: the report says so instead of failing
        return None


def _frame_index(path: str) -> int | None:
    stem = posixpath.basename(path).split(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def done_frames(store: FrameStore, manifest: Mapping[str, Any] | None) -> tuple[list[int], int | None]:
    """Finished frames (sorted) and the most recently finished one.

    A complete render's ``manifest.json`` lists them (one read); a running one is listed from its per-frame records
    (one listing: file names and modification times, no reads).
    """
    if manifest and isinstance(manifest.get("frames"), list):  # finished: no listing of a big folder needed
        done = sorted({int(r["index"]) for r in manifest["frames"] if isinstance(r, Mapping) and "index" in r})
        return done, (done[-1] if done else None)
    entries = listing(store, store.manifest_dir)
    records = [(index, mtime(e)) for e in entries
               if (name := str(e.get("name", ""))).endswith(".json") and TEMP_MARKER not in posixpath.basename(name)
               and (index := _frame_index(name)) is not None]
    done = sorted({index for index, _ in records})
    latest = None
    if records:
        newest = max(records, key=lambda r: (r[1], r[0]))
        latest = newest[0] if newest[1] > 0 else max(i for i, _ in records)
    elif done:
        latest = done[-1]
    return done, latest


def manifest_matches_plan(manifest: Mapping[str, Any], plan: Mapping[str, Any]) -> bool:
    """Whether ``manifest.json`` records exactly the frames ``plan.json`` planned (each chunk's key is the hash of
    its frame keys, as :func:`framefarm.animation.plan.plan_job` makes it)."""
    from framefarm.animation.plan import canonical_hash

    keys = {int(r["index"]): r.get("key") for r in manifest.get("frames", []) if isinstance(r, Mapping)
            and "index" in r}
    try:
        for chunk in plan.get("chunks", []):
            frames = [keys.get(i) for i in range(int(chunk["start"]), int(chunk["stop"]))]
            if None in frames or canonical_hash({"frames": frames}) != chunk["key"]:
                return False
    except (KeyError, TypeError, ValueError):
        return False
    return True


def _element(codec: str) -> tuple[str | None, str | None]:
    if codec in BROWSER_VIDEO_CODECS:
        return "video", BROWSER_VIDEO_CODECS[codec]
    if codec in BROWSER_IMAGE_CODECS:
        return "img", BROWSER_IMAGE_CODECS[codec]
    return None, None


def _video_entries(store: FrameStore) -> dict[str, Mapping[str, Any]]:
    return {posixpath.basename(str(e["name"]).rstrip("/")): e for e in listing(store, store.job_dir)}


def _is_video(name: str, entry: Mapping[str, Any]) -> bool:
    preview = name == PREVIEW_NAME or (name.startswith(f"{PREVIEW_PREFIX}_") and name.endswith(".mp4"))
    return (name.lower().endswith(VIDEO_SUFFIXES) and not preview and ".partial" not in name
            and TEMP_MARKER not in name and entry.get("type") != "directory")


def _video_file(store: FrameStore, entries: Mapping[str, Mapping[str, Any]], name: str, codec: str) -> VideoFile:
    entry = entries[name]
    is_folder = entry.get("type") == "directory"
    element, mime = (None, None) if is_folder else _element(codec)
    if element is None and not is_folder and name.lower().endswith(".gif"):
        element, mime = "img", "image/gif"
    size = entry.get("size")
    return VideoFile(name=name, location=_location(store, name), size=None if is_folder or size is None else int(size),
                     codec=codec, element=element, mime=mime)


def _codec(job: Mapping[str, Any]) -> str:
    return str((job.get("output") or {}).get("codec", "h264"))


def find_video(store: FrameStore, job: Mapping[str, Any], manifest: Mapping[str, Any] | None,
               entries: Mapping[str, Mapping[str, Any]] | None = None) -> VideoFile | None:
    """The deliverable beside the frames: the manifest's ``video``, else the newest video file in the job folder."""
    entries = _video_entries(store) if entries is None else entries
    name = None
    if manifest and manifest.get("video"):
        candidate = posixpath.basename(str(manifest["video"]).rstrip("/"))
        if candidate in entries:
            name = candidate
    if name is None:
        videos = [(n, e) for n, e in entries.items() if _is_video(n, e)]
        if videos:
            name = max(videos, key=lambda item: mtime(item[1]))[0]
    if name is None:
        return None
    return _video_file(store, entries, name, _codec(job))


def variation_names(job: Mapping[str, Any]) -> list[str]:
    """Each variation's name as the job gives it (``v1``, ``v2``, … by default); empty without variations.

    Duck-typed on job.json, as :func:`framefarm.animation.plan.variation_count`: one entry is no variation.
    """
    listed = job.get("variations")
    if not isinstance(listed, list) or len(listed) < 2:
        return []
    return [str(v.get("name") or f"v{i + 1}") if isinstance(v, Mapping) else f"v{i + 1}"
            for i, v in enumerate(listed)]


def preview_name(variation: str | None = None) -> str:
    """The report's own H.264 preview of the deliverable (of one variation's, with ``variation``)."""
    return PREVIEW_NAME if variation is None else f"{PREVIEW_PREFIX}_{variation}.mp4"


def find_variations(store: FrameStore, job: Mapping[str, Any], manifest: Mapping[str, Any] | None,
                    entries: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[VariationInfo, ...]:
    """The job's variations with their videos: the manifest's ``videos`` entry, else ``<job>_<name>[_<W>x<H>_…].*``
    (or such a folder: a PNG sequence) in the job folder. Empty for a job without variations."""
    names = variation_names(job)
    if not names:
        return ()
    entries = _video_entries(store) if entries is None else entries
    listed = job["variations"]
    recorded = (manifest or {}).get("videos")
    recorded = recorded if isinstance(recorded, Mapping) else {}
    stem_of = f"{job.get('name') or posixpath.basename(store.job_dir.rstrip('/'))}_"
    codec = _codec(job)
    infos = []
    for index, name in enumerate(names):
        spec = listed[index] if isinstance(listed[index], Mapping) else {}
        found = None
        if recorded.get(name):
            candidate = posixpath.basename(str(recorded[name]).rstrip("/"))
            found = candidate if candidate in entries else None
        if found is None:
            # The flow names a take's video <job>_<name>, then what it holds (_512x512_24fps_96f …,
            # framefarm.video.encode.output_name) and its suffix: the size must follow the name right away, or
            # take v1 would claim v10's video.
            own = re.compile(re.escape(stem_of + name) + r"(?:_\d+x\d+_[^/]*)?")
            matches = [(n, e) for n, e in entries.items()
                       if (e.get("type") == "directory" and own.fullmatch(n) and ".partial" not in n
                           and TEMP_MARKER not in n)
                       or (_is_video(n, e) and own.fullmatch(n.rsplit(".", 1)[0]))]
            found = max(matches, key=lambda item: mtime(item[1]))[0] if matches else None
        video = None if found is None else _video_file(store, entries, found, codec)
        preview = find_preview(store, name) if video is not None and video.element is None else None
        try:
            offset = int(spec.get("seed_offset") or 0)
        except (TypeError, ValueError):
            offset = 0
        infos.append(VariationInfo(index=index, name=name, seed_offset=offset,
                                   positive_prompt=str(spec.get("positive_prompt") or ""),
                                   negative_prompt=str(spec.get("negative_prompt") or ""),
                                   video=video, preview=preview))
    return tuple(infos)


def _location(store: FrameStore, name: str) -> str:
    local = store.local_path(name)
    return local if local is not None else store.fs.unstrip_protocol(store.path(name))


def find_preview(store: FrameStore, variation: str | None = None) -> VideoFile | None:
    """The H.264 preview the report made for a deliverable browsers can't play (of one variation's, with
    ``variation``), if there is one."""
    name = preview_name(variation)
    if not store.exists(name):
        return None
    return VideoFile(name=name, location=_location(store, name), size=None, codec="h264",
                     element="video", mime="video/mp4")


def read_timings(store: FrameStore) -> list[ChunkTiming]:
    """Chunk timings saved by an earlier report (``timings.json``); empty when there are none."""
    document = _read_json(store, TIMINGS_NAME)
    if not isinstance(document, Mapping) or not isinstance(document.get("chunks"), list):
        return []
    timings = []
    for item in document["chunks"]:
        try:
            timings.append(ChunkTiming.from_any(item))
        except (InputError, TypeError, ValueError):
            continue
    return timings


def write_timings(store: FrameStore, timings: Sequence[ChunkTiming]) -> None:
    """Keep the timings beside the job, so a report made later (``framefarm report``) still shows them."""
    store.write_json(TIMINGS_NAME, {"format": TIMINGS_FORMAT, "chunks": [t.to_json() for t in timings]})


def _with_ranges(timings: Iterable[ChunkTiming], plan: Mapping[str, Any] | None) -> tuple[ChunkTiming, ...]:
    ranges = {int(c["index"]): (int(c["start"]), int(c["stop"])) for c in (plan or {}).get("chunks", [])
              if "index" in c and "start" in c and "stop" in c}
    filled = []
    for timing in timings:
        if timing.start is None and timing.index in ranges:
            start, stop = ranges[timing.index]
            timing = dataclasses.replace(timing, start=start, stop=stop)
        filled.append(timing)
    # A chunk run twice (repair after verify) is shown once: its last run.
    last = {t.index: t for t in filled}
    return tuple(sorted(last.values(), key=lambda t: t.index))


def collect(store_root: str, job_name: str, chunk_timings: Sequence[Any] | None = None) -> ReportData:
    """Read the job's documents, frames, video and timings from its store (``chunk_timings``, when given, replace
    the saved ones; nothing is written).

    Raises:
        InputError: the store holds no ``job.json`` for ``job_name`` (not a framefarm job folder).
    """
    store = FrameStore(store_root, job_name)
    job = _read_json(store, "job.json")
    if not isinstance(job, dict):
        raise InputError("job", f"{store_root.rstrip('/')}/{job_name}", "holds no readable job.json",
                         "Give a job folder that framefarm rendered into (it has job.json and frames/)")
    notes = []
    plan = _read_json(store, "plan.json")
    if plan is not None and not isinstance(plan, dict):
        plan, notes = None, [*notes, "plan.json is damaged; chunk ranges and seeds are not shown"]
    manifest = _read_json(store, "manifest.json")
    if manifest is not None and not isinstance(manifest, dict):
        manifest = None
    if manifest is not None and plan is not None and not manifest_matches_plan(manifest, plan):
        # job.json and plan.json are written when a render starts, manifest.json when it ends: this is a new
        # render of the job (changed settings) still in progress, and the manifest is the previous one's.
        manifest = None
        notes.append("manifest.json is from an earlier render of this job; this render is still in progress")
    done, latest = done_frames(store, manifest)
    if chunk_timings is not None:
        timings = [ChunkTiming.from_any(item) for item in chunk_timings]
    else:
        timings = read_timings(store)
    entries = _video_entries(store)
    variations = find_variations(store, job, manifest, entries)
    if variations:
        # The job's video is its first variation's (as manifest["video"]): never another take found by age.
        video, preview = variations[0].video, variations[0].preview
    else:
        video = find_video(store, job, manifest, entries)
        preview = find_preview(store) if video is not None and video.element is None else None
    return ReportData(
        job_name=job_name, store=store, job=job, plan=plan, manifest=manifest, done=tuple(done), latest=latest,
        video=video, preview=preview,
        timings=_with_ranges(timings, plan), generated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        notes=tuple(notes), variations=variations,
    )


def schedule_values(job: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per-frame values of every numeric schedule of the job (``zoom``, ``strength`` …), and notes on failures.

    The job is validated again and evaluated exactly as the planner does; a job that no longer validates (written
    by another framefarm version) falls back to evaluating each ``motion`` schedule on its own.
    """
    from framefarm.animation.keyframes import parse_schedule
    from framefarm.animation.schedules import evaluate_job_schedules
    from framefarm.errors import FramefarmError
    from framefarm.job import validate_job

    try:
        spec = validate_job(job, source="job.json")
        values = evaluate_job_schedules(spec)
        model = job.get("model") or {}
        frames = spec.frames
        # cfg_scale and steps come from the model table when motion leaves them unset: plot what the frames got.
        for name in ("cfg_scale", "steps"):
            if name not in values and isinstance(model.get(name), (int, float)):
                values[name] = np.full(frames, float(model[name]))
        return values, []
    except FramefarmError as exc:
        notes = [f"job.json did not validate with this framefarm ({exc}); schedules evaluated one by one"]
    frames = int(job.get("frames") or 1)
    motion = job.get("motion") or {}
    values = {}
    for name, text in motion.items():
        if not isinstance(text, str):
            continue
        try:
            values[name] = parse_schedule(text, frames=frames, field=f"motion.{name}", seed=int(job.get("seed", -1)),
                                          interpolation=motion.get("interpolation", "linear"))
        except FramefarmError:
            continue
    return values, notes


def frame_prompts(job: Mapping[str, Any], frames: int) -> tuple[list[tuple[int, int, str, str]], list[str]]:
    """The prompt timeline: ``(start, stop, positive, negative)`` runs of frames sharing a prompt, and notes."""
    from framefarm.animation.prompts import prompts_for_frames
    from framefarm.errors import FramefarmError

    prompts = job.get("prompts") or {}
    parseq = job.get("parseq")
    if isinstance(parseq, Mapping) and isinstance(parseq.get("prompts"), list):
        # A Parseq table gives every frame's prompt (animation.job_frames.job_prompts reads it the same way).
        prompts = {str(frame): text for frame, text in enumerate(parseq["prompts"])}
    try:
        per_frame = prompts_for_frames(prompts, frames=frames, positive=job.get("positive_prompt", ""),
                                       negative=job.get("negative_prompt", ""), seed=job.get("seed"))
    except FramefarmError as exc:
        return [], [f"prompts could not be evaluated: {exc}"]
    runs: list[tuple[int, int, str, str]] = []
    for i, prompt in enumerate(per_frame):
        if runs and runs[-1][2] == prompt.positive and runs[-1][3] == prompt.negative:
            runs[-1] = (runs[-1][0], i + 1, prompt.positive, prompt.negative)
        else:
            runs.append((i, i + 1, prompt.positive, prompt.negative))
    return runs, []


def model_rows(job: Mapping[str, Any], plan: Mapping[str, Any] | None,
               manifest: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """``(what, value, hash)`` rows: the renderer, model references, ControlNet units, and any hashes recorded.

    Hashes are read from ``manifest.json`` (or ``plan.json``) under ``models`` or ``model_hashes``: a mapping of
    name → hash string, or name → ``{"path"/"name": …, "sha256": …, "short_hash": …}``.
    """
    rows: list[tuple[str, str, str]] = []
    renderer = (manifest or {}).get("renderer") or (plan or {}).get("renderer")
    if renderer:
        rows.append(("renderer", str(renderer), ""))
    hashes: dict[str, tuple[str, str]] = {}
    for document in (plan, manifest):
        for key in ("models", "model_hashes"):
            found = (document or {}).get(key)
            if not isinstance(found, Mapping):
                continue
            for name, value in found.items():
                if isinstance(value, Mapping):
                    label = str(value.get("name") or value.get("path") or "")
                    digest = str(value.get("sha256") or value.get("hash") or value.get("short_hash") or "")
                    short = value.get("short_hash")
                    if short and digest and short != digest:
                        digest = f"{digest} (A1111 {short})"
                    hashes[str(name)] = (label, digest)
                else:
                    hashes[str(name)] = ("", str(value))
    model = job.get("model") or {}
    for key in ("checkpoint", "vae"):
        if model.get(key) or key in hashes:
            label, digest = hashes.pop(key, ("", ""))
            rows.append((key, str(model.get(key) or label), digest))
    for key in ("sampler", "steps", "cfg_scale", "clip_skip", "dtype"):
        if key in model:
            rows.append((key, str(model[key]), ""))
    for i, unit in enumerate(job.get("controlnet") or []):
        label, digest = hashes.pop(f"controlnet.{i}", hashes.pop(str(unit.get("model")), ("", "")))
        rows.append((f"controlnet {i}", f"{unit.get('model')} ({unit.get('preprocessor', 'none')}, weight "
                                        f"{unit.get('weight', 1.0)})", digest))
    for name, (label, digest) in sorted(hashes.items()):
        rows.append((name, label, digest))
    return rows


def dumps(document: Any) -> str:
    """The resolved job as the report shows it (and as ``framefarm render`` would read it back)."""
    return json.dumps(document, indent=2, sort_keys=True)
