"""Prefect tasks of a render, cut where Prefect's retries, caching or a resource limit should apply, so each
applies to one kind of work: a failed chunk retries without decoding the source again, a rerun skips what its
cache key says is done, and the flow that calls these stays a plain list of steps.

* ``prepare_sources`` — decode the source video once into the store (video-to-video); a rerun skips it.
* ``render_chunk``   — the GPU work: cached across runs by the chunk's key, retried on failure, and resumable
  inside itself (frames already in the manifest are skipped, each new frame is committed the moment it exists).
* ``verify_frames``  — the manifest is the truth: every planned frame present with its key and an intact file.
* ``encode_video``   — ffmpeg, CPU work.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from framefarm.animation.plan import ChunkSpec, RenderPlan
from framefarm.errors import InputError, RenderError, RenderStopped
from framefarm.flows.chunk_work import SOURCE_DIR, render_chunk_frames
from framefarm.flows.render_process import render_in_process
from framefarm.flows.stop import raise_if_stopped, stop_requested
from framefarm.job_inputs import source_digest
from framefarm.images import decode_png, encode_png, fit_cover, load_image
from framefarm.renderers.testcard import source_testcard
from framefarm.storage import FrameStore
from framefarm.storage.atomic import atomic_write_bytes
from framefarm.video import decode_frames

# A full disk or quota on the store (local folder or mounted share): errors of the store, not of a worker.
STORE_FULL = {errno.ENOSPC, errno.EDQUOT}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


@dataclass(frozen=True)
class ChunkResult:
    """What one chunk task did: frames it rendered now and frames it found already done."""

    index: int
    rendered: tuple[int, ...]
    reused: tuple[int, ...]
    seconds: float
    worker: str = ""
    visible_devices: str = ""  # CUDA_VISIBLE_DEVICES of the process that rendered it ("" on a CPU box)
    started: str = ""  # ISO-8601 UTC, for the report's timeline

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Results cached by Prefect before the rename were pickled with the field named ``gpu``.
        if "gpu" in state:
            state = {**state, "visible_devices": state.get("visible_devices", state["gpu"])}
            del state["gpu"]
        self.__dict__.update(state)

    def to_json(self) -> dict[str, Any]:
        """The chunk's row of ``chunks.json``; the report's ``timings.json`` is made from the same row.

        ``gpu`` is the key both files have always used for :attr:`visible_devices`.
        """
        return {"index": self.index, "rendered": len(self.rendered), "reused": len(self.reused),
                "seconds": round(self.seconds, 3), "worker": self.worker, "gpu": self.visible_devices,
                "started": self.started}


def _chunk_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    # The chunk key covers every input of its frames; the store location is added because a cached result says
    # "these frames exist in *that* store". The flow still checks the manifest after every run (verify_frames).
    where = hashlib.sha256(f"{parameters['store_root']}|{parameters['chunk'].job}".encode()).hexdigest()[:16]
    return f"framefarm-chunk-{parameters['chunk'].key}-{where}"


class WorkerBlocklisted(RenderError):
    """This worker failed the job too often (``farm.blocklist_after``) and takes none of its chunks."""


def worker_id() -> str:
    """Who is rendering: ``$FRAMEFARM_WORKER_ID``, else host name and GPU (``render01-gpu1``, ``laptop-cpu``)."""
    explicit = os.environ.get("FRAMEFARM_WORKER_ID")
    if explicit:
        return explicit
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"{socket.gethostname()}-{'gpu' + gpus.replace(',', '+') if gpus else 'cpu'}"


def _retry_unless_blocklisted(task, task_run, state) -> bool:
    try:
        state.result()
    except (WorkerBlocklisted, InputError, RenderStopped):
        return False
    except Exception:
        return True
    return True


@task(
    name="render-chunk",
    task_run_name="render-chunk-{chunk.index}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_unless_blocklisted,
    cache_key_fn=_chunk_cache_key,
    persist_result=True,
)
def render_chunk(chunk: ChunkSpec, job: Any, backend: str, store_root: str) -> ChunkResult:
    """Render the frames of ``chunk`` that the manifest does not already hold, committing each as it finishes.

    A failure is recorded against this worker before it propagates (for the blocklist); a worker already
    blocklisted for this job refuses the chunk without trying, and that refusal is not retried here.
    """
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    raise_if_stopped(f"chunk {chunk.index}")
    store = FrameStore(store_root, job.name)
    worker = worker_id()
    if store.failure_count(worker) >= job.farm.blocklist_after:
        raise WorkerBlocklisted(f"worker {worker} failed {job.name} {job.farm.blocklist_after}+ times and takes "
                                "none of its chunks; fix the worker, or delete the job's failures/ folder")
    try:
        return _render_chunk(chunk, job, backend, store, started, started_at)
    except (InputError, RenderStopped):
        raise  # the job's fault, or the user's stop: not the worker's, so no blocklist entry and no retry
    except Exception as exc:
        if stop_requested():  # its render process was killed by the stop, not by a fault of this worker
            raise RenderStopped(f"chunk {chunk.index} stopped: finished frames are kept") from exc
        # The store is full: not the worker's fault, and writing a failure record there would fail as well and
        # hide this error behind a second one. Raised as it is; a retry after the back-off may find room.
        if not (isinstance(exc, OSError) and exc.errno in STORE_FULL):
            store.record_failure(worker, chunk.index, f"{type(exc).__name__}: {exc}")
        raise


def _render_chunk(chunk: ChunkSpec, job: Any, backend: str, store: FrameStore, started: float,
                  started_at: str) -> ChunkResult:
    timeout = job.farm.chunk_timeout
    # The whole job in one preview chunk renders in this thread: starting a render process cost more than the
    # frame (~0.3 s of a 1-frame preview). The process exists to kill a hung GPU call or model load; the preview
    # renderer is NumPy on the CPU, loads nothing, and a stop still ends it at the next frame. Several chunks keep
    # their processes: they render side by side there, while threads would share one interpreter lock.
    if timeout is None or (backend == "preview" and chunk.start == 0 and chunk.stop >= job.frames):
        # A thread cannot be killed: it stops at the next frame when a stop is requested.
        rendered, reused = render_chunk_frames(chunk, job, backend, store,
                                               on_frame=lambda frame: raise_if_stopped(f"frame {frame + 1}"))
    else:
        # In a render process the watchdog can kill (framefarm/flows/render_process.py). A backend that loads
        # models gets one process at a time, so a GPU holds one copy of the model, as it did in-process.
        rendered, reused = render_in_process(chunk, job, backend, store.root, timeout=timeout,
                                             max_processes=None if backend == "preview" else 1)
    return ChunkResult(index=chunk.index, rendered=rendered, reused=reused,
                       seconds=time.perf_counter() - started, worker=worker_id(),
                       visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES", ""), started=started_at)


def _retry_unless_stopped(task, task_run, state) -> bool:
    return not stop_requested()  # an ffmpeg killed by the user's stop must not start again


@task(name="prepare-sources", retries=1, retry_condition_fn=_retry_unless_stopped)
def prepare_sources(job: Any, store_root: str) -> int:
    """Decode ``job.source`` into ``<job>/source/NNNNNN.png`` at the job's size and fps (skipped when done).

    Returns the number of source frames available (at least ``job.frames``).
    """
    store = FrameStore(store_root, job.name)
    signature = {"source": job.source.model_dump(mode="json"), "width": job.width, "height": job.height,
                 "fps": job.fps, "frames": job.frames, "digest": source_digest(job)}
    marker = f"{SOURCE_DIR}/prepared.json"
    if store.exists(marker) and store.read_json(marker) == signature:
        _prepare_source_audio(job, store, signature["digest"])  # prepared before the sound was kept: get it now
        return job.frames
    if job.source.video == "testcard":
        frames = (source_testcard(i + job.source.start_frame, job.width, job.height, job.fps)
                  for i in range(job.frames))
    elif Path(job.source.video).is_dir():
        # A frame folder is taken frame for frame, in name order (no fps resampling: it has no clock).
        files = sorted(p for p in Path(job.source.video).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        frames = (fit_cover(load_image(p, field="source.video"), job.width, job.height)
                  for p in files[job.source.start_frame:])
    else:
        frames = decode_frames(job.source.video, width=job.width, height=job.height, fps=job.fps,
                               start_frame=job.source.start_frame)
    count = 0
    for index, image in enumerate(frames):
        if index >= job.frames:
            break
        atomic_write_bytes(store.fs, store.path(SOURCE_DIR, f"{index:06d}.png"), encode_png(image))
        count += 1
    if count < job.frames:
        raise InputError("source.video", job.source.video,
                         f"has only {count} frame(s) at {job.fps} fps from frame {job.source.start_frame}, "
                         f"the job needs {job.frames}", f"Set frames = {count} or use a longer source")
    store.write_json(marker, signature)
    _prepare_source_audio(job, store, signature["digest"])
    return count


SOURCE_AUDIO = f"{SOURCE_DIR}/audio.flac"


def _prepare_source_audio(job: Any, store: FrameStore, digest: str | None) -> bool:
    """Keep the source video's sound for the finishing stage: ``<job>/source/audio.flac`` (skipped when done).

    Cut like the frames: from the job's first source frame (``source.start_frame`` frames at the job's fps) for
    the job's length (``frames / fps`` seconds). A frame folder, the test card and a video without sound have no
    sound; returns whether the job has one. ``encode_video`` muxes it unless the job names its own ``output.audio``
    or sets ``output.source_audio = false``. ``digest`` is the source's content hash (:func:`source_digest`).
    """
    from framefarm.video.audio import extract_audio, has_audio_stream

    video = job.source.video
    if video == "testcard" or Path(video).is_dir():
        return False
    start, duration = job.source.start_frame / job.fps, job.frames / job.fps
    signature = {"digest": digest, "start": start, "duration": duration}
    marker = f"{SOURCE_DIR}/audio.json"
    if store.exists(marker):
        record = store.read_json(marker)
        if record.get("signature") == signature and (not record["audio"] or store.exists(SOURCE_AUDIO)):
            return bool(record["audio"])
    audio = has_audio_stream(video)
    if audio:
        with tempfile.TemporaryDirectory() as folder:
            extracted = extract_audio(video, Path(folder) / "audio.flac", start=start, duration=duration)
            atomic_write_bytes(store.fs, store.path(SOURCE_AUDIO), extracted.read_bytes())
    store.write_json(marker, {"signature": signature, "audio": audio})
    return audio


@task(name="verify-frames")
def verify_frames(plan: RenderPlan, store_root: str) -> list[int]:
    """Frames of the plan that are missing, stale or damaged (empty when the render is complete)."""
    return FrameStore(store_root, plan.job).verify_frames(plan.frame_keys)


@task(name="encode-video", retries=1, retry_condition_fn=_retry_unless_stopped)
def encode_video(plan: RenderPlan, job: Any, store_root: str, variation: int | None = None) -> str:
    """Finish the job's frames, in plan order, as ``job.output`` says (codec, loop, upscale, interpolation, audio),
    beside them; the output is decoded and checked before it is published. Returns the video's path or URL.

    A job with variations has one video per variation (``variation``: its index), named ``<job>_<variation name>``,
    from stored frames ``variation``, ``variation + V``, ``variation + 2V``, … (``framefarm.animation.plan``).
    """
    from framefarm.video.finish import finish, output_settings
    from framefarm.video.frames import FrameSequence

    raise_if_stopped("encoding")
    store = FrameStore(store_root, plan.job)
    name, count, offset = plan.job, plan.variations, 0
    if variation is not None:
        name, offset = f"{plan.job}_{job.variation_names[variation]}", variation
    frames = FrameSequence(plan.frames // count, lambda i: decode_png(store.read_frame_bytes(i * count + offset)),
                           name=name)
    settings = output_settings(job.output)
    local = store.local_path()
    with tempfile.TemporaryDirectory() as scratch:
        if settings["audio"] is None:
            settings["audio"] = _source_audio(job, store, scratch)
        if local is not None:
            result = finish(frames, local, fps=plan.fps, name=name, **settings)
            return os.path.abspath(result.path)
        # Remote store: finish into a local temp folder, then upload (an object PUT is atomic).
        result = finish(frames, scratch, fps=plan.fps, name=name, **settings)
        remote = store.path(result.path.name)
        if result.path.is_dir():  # PNG sequence
            store.fs.put(str(result.path), remote, recursive=True)
        else:
            store.fs.put_file(str(result.path), remote)
    return f"{store.fs.unstrip_protocol(remote)}"


def _source_audio(job: Any, store: FrameStore, scratch: str) -> str | None:
    """The source video's kept sound as a local file, when the job has one and wants it in its format."""
    from framefarm.video.codecs import get_codec

    if not job.output.source_audio or getattr(job, "source", None) is None or not store.exists(SOURCE_AUDIO):
        return None
    if get_codec(job.output.codec).audio_codec is None:
        return None  # GIF, PNG sequence: the format has no sound track (an explicit output.audio is an error)
    local = store.local_path(SOURCE_AUDIO)
    if local is not None:
        return local
    path = os.path.join(scratch, "source-audio.flac")
    store.fs.get_file(store.path(SOURCE_AUDIO), path)
    return path
