"""What a job reads, worked out before any rendering: content hashes of its input files (for the frame keys) and the
one-time batch-size choice. Kept free of Prefect, so ``framefarm plan``, ``framefarm validate`` and the API plan a job
without importing the orchestrator; the render flow uses the same functions."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framefarm.errors import InputError
from framefarm.storage import FrameStore, file_digest

if TYPE_CHECKING:  # the type only: importing the job models at run time would pull in pydantic
    from framefarm.job.schema import AnyJob

BATCH_SIZE_RECORD = "batch_size.json"


def resolve_job_batch_size(job: AnyJob, store_root: str | None, backend: str) -> tuple[Any, dict[str, Any] | None]:
    """The job with ``batch_size = "auto"`` replaced by a number, chosen once per job; and the record of the choice.

    The choice (framefarm/renderers/batch_size.py) is written to ``<job>/batch_size.json`` and reused by every later
    run whose inputs to it are unchanged, so a resume on another machine, or with other free memory, keeps the
    frame keys. Chunks get the resolved job, so no worker ever chooses. Jobs with a number (or no batch size) come
    back as they are, with no record. ``store_root=None`` chooses without reading or writing a record (``plan``).
    """
    if getattr(job, "batch_size", None) != "auto":
        return job, None
    from framefarm.renderers.batch_size import choice_inputs, resolve_batch_size

    store = FrameStore(store_root, job.name) if store_root is not None else None
    record = None
    if store is not None and store.exists(BATCH_SIZE_RECORD):
        record = store.read_json(BATCH_SIZE_RECORD)
        if record.get("inputs") != choice_inputs(job, backend):
            record = None  # made for other settings (whose frames re-render anyway): choose again
    if record is None:
        record = {"requested": "auto", **resolve_batch_size(job, backend).to_json()}
        if store is not None:
            store.write_json(BATCH_SIZE_RECORD, record)
    return job.model_copy(update={"batch_size": int(record["batch_size"])}), record


def source_digest(job: AnyJob) -> str | None:
    """Content hash of the job's source video (``None`` for the built-in test card)."""
    source = getattr(job, "source", None)
    if source is None or source.video == "testcard":
        return None
    path = Path(source.video)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(path.iterdir()):
            if child.is_file():
                digest.update(child.name.encode() + file_digest(child).encode())
        return digest.hexdigest()
    if not path.is_file():
        raise InputError("source.video", source.video, "no such file or folder",
                         'Give a video file, a folder of frames, or "testcard"')
    return file_digest(path)


def input_hashes(job: AnyJob, backend: str = "preview") -> dict[str, str]:
    """Content hashes of the files a job reads, by field, for the frame keys. Model files count only for a backend
    that loads them: a preview never reads the checkpoint, so it should not hash gigabytes of it."""
    hashes = {}
    if backend != "preview":
        from framefarm.renderers.models.keys import model_input_hashes

        hashes.update(model_input_hashes(job))
    if backend == "diffusers":
        from framefarm.renderers.accel import compile_key
        from framefarm.renderers.diffusers.renderer import KIND_VERSIONS

        if job.kind in KIND_VERSIONS:
            hashes["renderer.kind"] = f"{job.kind}@{KIND_VERSIONS[job.kind]}"
        # Whether the worker's compile=auto compiles this job (compiled kernels round differently): in the keys,
        # so frames of the compiled and the eager path are never mixed in one job.

        compiled = compile_key(job)
        if compiled is not None:
            hashes["accel.compile"] = compiled
    if job.init_image:
        if not Path(job.init_image).is_file():
            raise InputError("init_image", job.init_image, "no such image file", "Give the path of a PNG or JPEG")
        hashes["init_image"] = file_digest(job.init_image)
    for index, shot in enumerate(getattr(job, "shots", ())):  # a Deforum shot's own init image: its frames' keys
        if shot.init_image:
            if not Path(shot.init_image).is_file():
                raise InputError(f"shots.{index}.init_image", shot.init_image, "no such image file",
                                 "Give the path of a PNG or JPEG")
            hashes[f"shot@{shot.start}.init_image"] = file_digest(shot.init_image)
    digest = source_digest(job)
    if digest is not None:
        hashes["source.video"] = digest
    return hashes
