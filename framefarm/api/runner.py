"""Where API jobs run: in local render processes, or on the Prefect farm.

**Local** (the default): each job is one ``framefarm render`` process (the same CLI, hence the same flow, exit codes
and resume), started by a worker thread of the API, one job at a time per worker (``parallel``). A process rather
than a thread because a render must be cancellable at any moment and must not take the API down with it: a thread
can't be killed, while a process (its own session, so its Prefect server and ffmpeg go with it) can be, and the
frame store's atomic commits make that safe (``tests/faults`` kills renders with SIGKILL and resumes them). A
process also gives the GPU memory back when the job ends. It costs a Prefect start-up per job (about 15 s on a
2-core box with Prefect's ephemeral server; a second or two when ``PREFECT_API_URL`` names a running server, which
the job processes inherit, and where their runs then show up). Job records are JSON files in the state folder, so
the queue survives a restart of the API; a render cut short by a restart is queued again and resumes.

**Farm**: jobs become flow runs of the ``render-job/farm`` deployment (:func:`framefarm.flows.farm_queue.submit`) on the
Prefect server named by ``PREFECT_API_URL``; Prefect's workers run them, and status and cancel go to Prefect. Pick
it with ``framefarm api --runner farm`` once ``framefarm farm-setup`` has run and workers are up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from framefarm.api.jobs import TERMINAL, JobRequest
from framefarm.api.osc import OscTarget, clip_ready_message, send
from framefarm.errors import InputError
from framefarm.storage import FrameStore
from framefarm.storage.atomic import atomic_write_text

if TYPE_CHECKING:  # the type only: importing the job models at run time would pull in pydantic
    from framefarm.job.schema import AnyJob

POLL_S = 0.5
TERMINATE_GRACE_S = 10.0
_OUTPUT_NAME = re.compile(r"_(\d+(?:\.\d+)?)fps_(\d+)f(?:_|\.|$)")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class JobRecord:
    """One API job, as the runner keeps it (and persists it, for the local runner)."""

    id: str
    name: str
    state: str
    runner: str
    backend: str
    out: str
    frames: int
    fps: float
    created: str
    chunk_size: int | None = None
    priority: int = 10
    bpm: float | None = None
    beats: int | None = None
    started: str | None = None
    finished: str | None = None
    video: str | None = None
    report: str | None = None
    error: str | None = None
    osc: list[str] = field(default_factory=list)
    done_at_start: int = 0
    started_monotonic: float | None = None
    cancel_requested: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("started_monotonic")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def store(self) -> FrameStore:
        return FrameStore(self.out, self.name)


@dataclass(frozen=True)
class Progress:
    done: int
    eta_seconds: float | None


class Runner(Protocol):
    kind: str
    out: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def submit(self, job: AnyJob, request: JobRequest) -> JobRecord: ...
    def get(self, job_id: str) -> JobRecord: ...
    def list(self) -> list[JobRecord]: ...
    def cancel(self, job_id: str) -> JobRecord: ...
    def progress(self, record: JobRecord) -> Progress: ...


class JobNotFound(KeyError):
    """No job with that id."""


def clip_facts(record: JobRecord) -> tuple[float, int]:
    """The output's fps and frame count: from its file name (``…_24fps_96f.mp4``, what the finishing stage wrote
    after loops and interpolation), else probed, else the job's own."""
    if record.video:
        match = _OUTPUT_NAME.search(Path(record.video).name)
        if match:
            return float(match.group(1)), int(match.group(2))
        local = record.store().local_path(Path(record.video).name)
        if local and os.path.isfile(local):
            from framefarm.video.decode import probe_video

            try:
                info = probe_video(local, count=False)
                return info.fps, round(info.duration * info.fps)
            except Exception:  # a clip ready message without exact numbers beats none
                pass
    return record.fps, record.frames


def announce(record: JobRecord, targets: Sequence[OscTarget]) -> list[str]:
    """Send the OSC "clip ready" message of a finished job to ``targets`` plus the job's own; returns errors."""
    all_targets = list(targets) + [OscTarget.parse(t) for t in record.osc]
    if not all_targets or not record.video:
        return []
    fps, frames = clip_facts(record)
    path = record.video
    local = record.store().local_path(Path(path).name)
    if local is not None:
        path = os.path.abspath(local)
    message = clip_ready_message(path=path, fps=fps, frames=frames, bpm=record.bpm, beats=record.beats,
                                 job=record.name)
    return send(message, all_targets)


def ensure_report(record: JobRecord) -> str | None:
    """The job's report (written now unless one newer than the job's start exists); ``None`` if it can't be made."""
    from framefarm.report import REPORT_NAME, write_report
    from framefarm.report.collect import listing, mtime

    store = record.store()
    started = dt.datetime.fromisoformat(record.started).timestamp() if record.started else 0.0
    entries = {Path(str(e["name"])).name: e for e in listing(store, store.job_dir)}
    if REPORT_NAME in entries and mtime(entries[REPORT_NAME]) >= started - 1:
        return REPORT_NAME
    try:
        write_report(record.out, record.name)
    except InputError:
        return None
    return REPORT_NAME


def _record_for(job: AnyJob, request: JobRequest, *, job_id: str, runner: str, out: str) -> JobRecord:
    from framefarm.video.finish import check_job_output

    # A loop with a tempo but no beat count gets the count its length makes (what the output's name carries), so
    # the status and the "clip ready" message agree with the file.
    _frames, _fps, beats = check_job_output(job.frames, job.fps, job.output)
    return JobRecord(
        id=job_id, name=job.name, state="queued", runner=runner, backend=request.backend, out=out,
        frames=job.frames, fps=float(job.fps), created=now(), chunk_size=request.chunk_size,
        priority=request.priority, bpm=job.output.bpm, beats=beats,
        osc=[str(OscTarget.parse(request.osc, field="osc"))] if request.osc else [],
    )


# ----- local runner -------------------------------------------------------------------------------------------------


class LocalRunner:
    """Jobs as ``framefarm render`` processes, ``parallel`` at a time, FIFO within priority (see the module doc)."""

    kind = "local"

    def __init__(self, out: str, state_dir: str | Path, *, parallel: int = 1, osc: Sequence[OscTarget] = (),
                 python: str = sys.executable) -> None:
        self.out = out
        self.state_dir = Path(state_dir)
        self.parallel = max(1, parallel)
        self.osc = list(osc)
        self.python = python
        self._jobs: dict[str, JobRecord] = {}
        self._processes: dict[str, subprocess.Popen] = {}
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        for folder in ("jobs", "specs", "logs"):
            (self.state_dir / folder).mkdir(parents=True, exist_ok=True)
        self._load()

    # -- persistence

    def _load(self) -> None:
        for path in sorted((self.state_dir / "jobs").glob("*.json")):
            try:
                record = JobRecord.from_json(json.loads(path.read_text()))
            except (ValueError, TypeError):
                continue
            if record.state == "running":  # the API stopped under it: frames are kept, so run it again (resumes)
                record.state, record.started, record.error = "queued", None, None
            self._jobs[record.id] = record
            self._save(record)

    def _save(self, record: JobRecord) -> None:
        path = self.state_dir / "jobs" / f"{record.id}.json"
        # The temp name ends in .tmp so that _load's "*.json" glob never reads a half-written record.
        atomic_write_text(path, json.dumps(record.to_json(), indent=2), temp=path.with_suffix(".json.tmp"))

    # -- lifecycle

    def start(self) -> None:
        self._stopping.clear()
        for i in range(self.parallel):
            thread = threading.Thread(target=self._work, name=f"framefarm-api-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop taking jobs; a render in progress is stopped and queued again (it resumes on the next start)."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=TERMINATE_GRACE_S + 5)
        self._threads.clear()

    # -- API

    def submit(self, job: AnyJob, request: JobRequest) -> JobRecord:
        job_id = uuid.uuid4().hex
        record = _record_for(job, request, job_id=job_id, runner=self.kind, out=self.out)
        spec = self.state_dir / "specs" / f"{job_id}.json"
        spec.write_text(json.dumps(job.model_dump(mode="json"), indent=2))
        with self._wake:
            self._jobs[job_id] = record
            self._save(record)
            self._wake.notify()
        return replace(record)

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            if job_id not in self._jobs:
                raise JobNotFound(job_id)
            return replace(self._jobs[job_id])

    def list(self) -> list[JobRecord]:
        with self._lock:
            return sorted((replace(r) for r in self._jobs.values()), key=lambda r: r.created, reverse=True)

    def cancel(self, job_id: str) -> JobRecord:
        with self._wake:
            if job_id not in self._jobs:
                raise JobNotFound(job_id)
            record = self._jobs[job_id]
            if record.state == "queued":
                record.state, record.finished = "cancelled", now()
                self._save(record)
            elif record.state == "running":
                record.cancel_requested = True  # the worker stops the process at its next poll
                self._save(record)
            return replace(record)

    def progress(self, record: JobRecord) -> Progress:
        if record.state in ("queued", "cancelled") and not record.started:
            done = 0
        else:
            try:
                done = min(record.frames, record.store().count_records())
            except Exception:  # an unreachable store: no progress, not an error
                done = 0
        eta = None
        if record.state == "running" and record.started_monotonic is not None:
            rendered = done - record.done_at_start
            if rendered > 0:
                elapsed = time.monotonic() - record.started_monotonic
                eta = elapsed / rendered * (record.frames - done)
        elif record.state == "completed":
            done = record.frames
        return Progress(done=done, eta_seconds=eta)

    # -- the work

    def _next(self) -> JobRecord | None:
        busy = {r.name for r in self._jobs.values() if r.state == "running"}
        # Two jobs of one name write into one folder: never at the same time.
        queued = [r for r in self._jobs.values() if r.state == "queued" and r.name not in busy]
        return min(queued, key=lambda r: (r.priority, r.created, r.id)) if queued else None

    def _work(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                record = self._next()
                if record is None:
                    self._wake.wait(timeout=1.0)
                    continue
                record.state, record.started, record.error = "running", now(), None
                record.started_monotonic = time.monotonic()
                try:
                    record.done_at_start = record.store().count_records()
                except Exception:
                    record.done_at_start = 0
                self._save(record)
            try:
                self._run(record)
            except Exception as exc:  # never lose the worker thread: the job fails, the queue goes on
                with self._lock:
                    record.state, record.finished = "failed", now()
                    record.error = f"the API could not run the render: {type(exc).__name__}: {exc}"
                    self._save(record)

    def _command(self, record: JobRecord) -> list[str]:
        command = [self.python, "-m", "framefarm", "render", str(self.state_dir / "specs" / f"{record.id}.json"),
                   "--out", record.out, "--backend", record.backend]
        if record.chunk_size:
            command += ["--chunk-size", str(record.chunk_size)]
        return command

    def _run(self, record: JobRecord) -> None:
        log = self.state_dir / "logs" / f"{record.id}.log"
        out = self.state_dir / "logs" / f"{record.id}.out"
        env = {**os.environ, "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING")}
        with open(log, "ab") as stderr, open(out, "wb") as stdout:
            process = subprocess.Popen(self._command(record), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                       env=env, start_new_session=True)
            with self._lock:
                self._processes[record.id] = process
            try:
                stopped_for = None
                while process.poll() is None:
                    time.sleep(POLL_S)
                    with self._lock:
                        if record.cancel_requested:
                            stopped_for = "cancel"
                        elif self._stopping.is_set():
                            stopped_for = "shutdown"
                    if stopped_for:
                        _terminate(process)
                        break
                code = process.wait()
            finally:
                if process.poll() is None:
                    _terminate(process)
                with self._lock:
                    self._processes.pop(record.id, None)
        self._finish(record, code, stopped_for, out, log)

    def _finish(self, record: JobRecord, code: int, stopped_for: str | None, out: Path, log: Path) -> None:
        report, notes = None, []  # what went wrong with the outputs beyond the video
        if stopped_for is None and code == 0:
            lines = out.read_text(errors="replace").strip().splitlines()
            with self._lock:
                record.video = Path(lines[-1]).name if lines else None
            # Still "running" to clients until the report is written and the clip announced: "completed" means
            # every output is there. Outside the lock: a big job's report takes a moment; status calls don't wait.
            try:
                report = ensure_report(record)
            except Exception as exc:  # the video is there: a report that failed is a note, not a failed job
                notes.append(f"report not written ({type(exc).__name__}: {exc})")
            try:
                notes += announce(record, self.osc)
            except Exception as exc:
                notes.append(f"OSC not sent ({type(exc).__name__}: {exc})")
        with self._lock:
            if stopped_for == "cancel":
                record.state, record.error = "cancelled", None
            elif stopped_for == "shutdown":
                record.state, record.started = "queued", None  # resumes when the API starts again
            elif code == 0:
                record.state, record.report = "completed", report
                record.error = "; ".join(notes) if notes else None
            else:
                record.state, record.error = "failed", _failure(code, log)
            if record.state != "queued":
                record.finished = now()
            record.cancel_requested = False
            self._save(record)


def _failure(code: int, log: Path) -> str:
    """Why a render failed: the CLI's own one-line message ("invalid input …", "render failed …") when it printed
    one (the contract of ``framefarm render``), else the end of its stderr."""
    lines = _clean(log.read_text(errors="replace").strip().splitlines())
    for line in reversed(lines):
        if line.startswith(("invalid input", "render failed")):
            return line
    cause = "invalid input" if code == 2 else f"render failed (exit {code})"
    return f"{cause}: " + "\n".join(lines[-12:])


def _clean(lines: list[str]) -> list[str]:
    # The render's stderr is a progress bar and messages; keep the messages.
    ansi = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
    kept = [ansi.sub("", line).strip() for line in lines]
    return [line for line in kept if line and "━" not in line]


def _terminate(process: subprocess.Popen) -> None:
    """Stop a render and everything it started (its own session: Prefect's server, ffmpeg): TERM, then KILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the session (the server it started)
    except ProcessLookupError:
        pass
    process.wait()


# ----- farm runner --------------------------------------------------------------------------------------------------

_FARM_STATES = {"Scheduled": "queued", "Pending": "queued", "Late": "queued", "AwaitingRetry": "queued",
                "Paused": "queued", "Retrying": "running", "Running": "running", "Completed": "completed",
                "Failed": "failed", "Crashed": "failed", "Cancelled": "cancelled", "Cancelling": "cancelled"}


class FarmRunner:
    """Jobs as flow runs of the farm deployment on the Prefect server (``PREFECT_API_URL``)."""

    kind = "farm"

    def __init__(self, out: str, *, osc: Sequence[OscTarget] = ()) -> None:
        self.out = out
        self.osc = list(osc)
        self._submitted: dict[str, JobRecord] = {}
        self._announced: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._watch, name="framefarm-api-farm-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def submit(self, job: AnyJob, request: JobRequest) -> JobRecord:
        from framefarm.flows.farm_queue import submit

        run_id = submit(job, out=self.out, backend=request.backend, chunk_size=request.chunk_size,
                        priority=request.priority)
        record = _record_for(job, request, job_id=run_id, runner=self.kind, out=self.out)
        with self._lock:
            self._submitted[run_id] = record
        return replace(record)

    def _read(self, job_id: str) -> JobRecord:
        from prefect import get_client

        try:
            uuid.UUID(job_id)
        except ValueError:
            raise JobNotFound(job_id) from None
        with get_client(sync_client=True) as client:
            try:
                run = client.read_flow_run(job_id)
            except Exception as exc:
                if "404" in str(exc) or "not found" in str(exc).lower():
                    raise JobNotFound(job_id) from None
                raise
        return self._record_of(run)

    def _record_of(self, run: Any) -> JobRecord:
        from framefarm.flows.job_ref import job_fields

        out = run.parameters.get("out") or self.out
        job = job_fields(run.parameters.get("job"), out)
        output = job.get("output") or {}
        known = self._submitted.get(str(run.id))
        record = JobRecord(
            id=str(run.id), name=job.get("name", "?"), state=_FARM_STATES.get(run.state_name or "", "queued"),
            runner=self.kind, backend=run.parameters.get("backend", "preview"), out=out,
            frames=int(job.get("frames", 0)), fps=float(job.get("fps", 24.0)),
            created=(run.created or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds"),
            chunk_size=run.parameters.get("chunk_size"), bpm=output.get("bpm"), beats=output.get("beats"),
            started=run.start_time.isoformat(timespec="seconds") if run.start_time else None,
            finished=run.end_time.isoformat(timespec="seconds") if run.end_time else None,
            osc=known.osc if known else [],
        )
        if record.state in ("failed", "cancelled") and run.state and run.state.message:
            record.error = run.state.message
        if record.state == "completed":
            try:
                manifest = record.store().read_json("manifest.json")
                record.video = Path(str(manifest.get("video", ""))).name or None
            except (FileNotFoundError, ValueError):
                pass
        return record

    def get(self, job_id: str) -> JobRecord:
        return self._read(job_id)

    def list(self) -> list[JobRecord]:
        from framefarm.flows.farm_queue import farm_flow_runs

        return [self._record_of(run) for run in farm_flow_runs(limit=200)]

    def cancel(self, job_id: str) -> JobRecord:
        from framefarm.flows.farm_queue import cancel

        record = self._read(job_id)
        if record.state not in TERMINAL:
            cancel(job_id)
            record = self._read(job_id)
        return record

    def progress(self, record: JobRecord) -> Progress:
        from framefarm.flows.farm_queue import QueuedJob, eta_seconds

        try:
            done = min(record.frames, record.store().count_records()) if record.started else 0
        except Exception:
            done = 0
        state = {"running": "Running"}.get(record.state, record.state)
        queued = QueuedJob(run_id=record.id, job=record.name, state=state, priority=record.priority,
                           scheduled=None, started=record.started, out=record.out, frames=record.frames, done=done)
        return Progress(done=record.frames if record.state == "completed" else done, eta_seconds=eta_seconds(queued))

    def _watch(self) -> None:
        """Announce jobs submitted here when they complete (OSC); the farm's flow writes their reports."""
        while not self._stopping.wait(5.0):
            with self._lock:
                pending = [r for r in self._submitted.values() if r.id not in self._announced]
            for record in pending:
                try:
                    current = self._read(record.id)
                except Exception:
                    continue
                if current.state in TERMINAL:
                    with self._lock:
                        self._announced.add(record.id)
                    if current.state == "completed":
                        ensure_report(current)
                        announce(current, self.osc)
