"""Jobs travel to flows by reference: the resolved job is stored in its job folder, the flow gets its hash.

Prefect stores a flow run's parameters on its server and refuses more than 512 KB of them; a Deforum settings file
exported by a camera tool holds thousands of per-frame keys and makes a job of a megabyte or more. So the flow's
``job`` parameter is a reference, ``<name>@sha256:<hex>``, to ``<out>/<name>/jobs/<hex>.json`` (the resolved job
as canonical JSON); Prefect's UI still shows which job and which version of it a run rendered. The content hash
makes the file immutable: a changed job is a new file, and a damaged one is refused, never rendered.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from framefarm.cache import LruCache
from framefarm.errors import InputError
from framefarm.storage import FrameStore
from framefarm.storage.atomic import atomic_write_bytes

JOBS_DIR = "jobs"
REF_PATTERN = re.compile(r"^(?P<name>[^@/\\]+)@sha256:(?P<digest>[0-9a-f]{64})$")
# Jobs this process stored or loaded, by hash: a flow run in the same process (the CLI) skips validating a big job
# a second time. Keyed by content hash, so an entry can never be stale; bounded, because a chunk worker loads every
# job of the farm over a night and a camera-export job can be megabytes.
_RESOLVED: LruCache[str, Any] = LruCache(8, name="resolved jobs")


def _canonical(job: Any) -> bytes:
    return json.dumps(job.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def store_job(job: Any, out: str) -> str:
    """Write the resolved ``job`` into its job folder under ``out`` (once per content) and return its reference."""
    data = _canonical(job)
    digest = hashlib.sha256(data).hexdigest()
    store = FrameStore(out, job.name)
    if not store.exists(f"{JOBS_DIR}/{digest}.json"):
        atomic_write_bytes(store.fs, store.path(JOBS_DIR, f"{digest}.json"), data)
    _RESOLVED.put(digest, job)
    return f"{job.name}@sha256:{digest}"


def is_job_ref(value: Any) -> bool:
    return isinstance(value, str) and REF_PATTERN.match(value) is not None


def ref_name(ref: str) -> str:
    """The job name in a reference (what Prefect's run name shows)."""
    return ref.partition("@")[0]


def load_job_ref(ref: str, out: str) -> Any:
    """The job a reference names, read from its job folder under ``out`` and checked against its hash.

    Raises:
        InputError: not a reference, no such stored job, or its content does not match the hash.
    """
    match = REF_PATTERN.match(ref) if isinstance(ref, str) else None
    if match is None:
        raise InputError("job", str(ref)[:80], "is not a job reference",
                         "Pass a job, its JSON, or a reference name@sha256:<64 hex digits> (framefarm.flows.job_ref)")
    name, digest = match["name"], match["digest"]
    return _RESOLVED.get_or_load(digest, lambda: _read_stored_job(ref, out, name, digest))


def _read_stored_job(ref: str, out: str, name: str, digest: str) -> Any:
    """The stored job ``digest`` of job ``name``, read, checked against its hash and validated."""
    from framefarm.job import validate_job

    store = FrameStore(out, name)
    try:
        data = store.fs.cat_file(store.path(JOBS_DIR, f"{digest}.json"))
    except FileNotFoundError:
        raise InputError("job", ref, f"is not stored under {out}/{name}/{JOBS_DIR}/",
                         "Pass the same out as the run that stored the job, or store it with store_job") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise InputError("job", ref, "does not match its stored file (the file was changed or damaged)",
                         f"Render the job file again; it stores a fresh copy under {name}/{JOBS_DIR}/")
    return validate_job(json.loads(data), source=f"stored job {name}@sha256:{digest[:12]}")


def job_fields(parameter: Any, out: str) -> dict[str, Any]:
    """A flow run's ``job`` parameter as the job's JSON fields, for listings: a reference is read from its job folder
    (a store that can't be read gives just the name), a dict is taken as it is."""
    if is_job_ref(parameter):
        try:
            return load_job_ref(parameter, out).model_dump(mode="json")
        except (InputError, OSError):
            return {"name": ref_name(parameter)}
    return dict(parameter) if isinstance(parameter, dict) else {}
