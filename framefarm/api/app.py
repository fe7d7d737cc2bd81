"""The HTTP API: submit a job, watch it, cancel it, download what it made. For TouchDesigner, Resolume, scripts.

Every route but ``GET /health`` needs the API token, as ``Authorization: Bearer <token>`` (or ``X-API-Key``),
compared in constant time. The OpenAPI document is ``GET /openapi.json`` (token required as well). docs/
report_and_api.md has examples.
"""

from __future__ import annotations

import hmac
import mimetypes
import posixpath
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Security, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from framefarm import __version__
from framefarm.api.access import MediaRoots
from framefarm.api.jobs import (
    TERMINAL,
    Health,
    JobLinks,
    JobRequest,
    JobStatus,
    JobValidationError,
    Problems,
    job_schema,
    validate_request,
)
from framefarm.api.osc import OscTarget
from framefarm.api.runner import JobNotFound, JobRecord, Runner
from framefarm.errors import InputError
from framefarm.storage.atomic import TEMP_MARKER

MAX_BODY_BYTES = 1_000_000  # a job spec is a few kB; refuse megabytes before parsing them
_bearer = HTTPBearer(auto_error=False, description="The API token: `Authorization: Bearer <token>`.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API token, for tools that can't set "
                                                                          "an Authorization header.")


@dataclass(frozen=True)
class ApiSettings:
    """How the API runs.

    Attributes:
        token: the API token every request but ``/health`` must carry.
        out: the store root jobs render into (a folder or an fsspec URL); clients can't choose it.
        runner: ``"local"`` (render processes started by the API) or ``"farm"`` (Prefect deployment).
        state_dir: where the local runner keeps its queue, job specs and logs.
        parallel: local runner: jobs rendering at once.
        osc: where to send the OSC "clip ready" message of every finished job.
        media: the folders a submitted job's path fields may name (``--media-root``); none by default, so a job
            that names a file is refused.
        osc_allow: the ``host:port`` targets a submitted job may name as its own ``osc`` (``--osc-allow``).
    """

    token: str
    out: str = "renders"
    runner: str = "local"
    state_dir: str | None = None
    parallel: int = 1
    osc: tuple[OscTarget, ...] = field(default=())
    media: MediaRoots = field(default_factory=MediaRoots)
    osc_allow: tuple[OscTarget, ...] = field(default=())


def default_state_dir(out: str) -> str:
    """The local runner's state folder: inside a local output root, else under the user's cache."""
    import os

    if "://" not in out:
        return os.path.join(os.path.abspath(out), ".framefarm-api")
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "framefarm", "api")


def make_runner(settings: ApiSettings) -> Runner:
    from framefarm.api.runner import FarmRunner, LocalRunner

    if settings.runner == "farm":
        return FarmRunner(settings.out, osc=settings.osc)
    if settings.runner != "local":
        raise ValueError(f"unknown runner {settings.runner!r}: local or farm")
    return LocalRunner(settings.out, settings.state_dir or default_state_dir(settings.out),
                       parallel=settings.parallel, osc=settings.osc)


def create_app(settings: ApiSettings, runner: Runner | None = None) -> FastAPI:
    """The FastAPI application. ``runner`` defaults to the one ``settings`` names; it is started and stopped with
    the application (the ASGI lifespan). The routes live in :data:`router` and reach both through ``app.state``."""
    if not settings.token:
        raise ValueError("an API token is required (framefarm api --token, or $FRAMEFARM_API_TOKEN)")
    app = FastAPI(
        title="framefarm API", version=__version__, lifespan=_lifespan, openapi_url=None, docs_url=None,
        redoc_url=None,
        description="Submit render jobs to framefarm, follow them, cancel them and download their video and report. "
                    "Every route but `/health` needs the API token (`Authorization: Bearer <token>` or `X-API-Key`).",
    )
    app.state.settings = settings
    app.state.runner = runner or make_runner(settings)
    app.middleware("http")(_limit_body)
    app.add_exception_handler(JobValidationError, _invalid_job)  # type: ignore[arg-type]
    app.include_router(router)
    app.openapi = lambda: _openapi_with_job_schema(app)  # type: ignore[method-assign]
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    runner: Runner = app.state.runner
    runner.start()
    try:
        yield
    finally:
        await run_in_threadpool(runner.stop)


async def _limit_body(request: Request, call_next):
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
    return await call_next(request)


async def _invalid_job(_request: Request, exc: JobValidationError) -> JSONResponse:
    return JSONResponse({"detail": exc.errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _openapi_with_job_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the job spec's models, so a client sees every field of the job it posts."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    job, definitions = job_schema()
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in definitions.items():
        components.setdefault(name, definition)
    components["JobSpec"] = job
    app.openapi_schema = schema
    return schema


# ----- Dependencies: the app's settings and runner, and the token check ------------------------------------------


def _settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def _runner(request: Request) -> Runner:
    return request.app.state.runner


SettingsDep = Annotated[ApiSettings, Depends(_settings)]
RunnerDep = Annotated[Runner, Depends(_runner)]


def require_token(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key)],
) -> None:
    given = bearer.credentials if bearer is not None else api_key
    if not given:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "an API token is required: send "
                            "Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode("utf-8"), settings.token.encode("utf-8")):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the API token is not valid")


_AUTH = [Depends(require_token)]
router = APIRouter()


def _status_of(runner: Runner, record: JobRecord) -> JobStatus:
    progress = runner.progress(record)
    base = f"/jobs/{record.id}"
    return JobStatus(
        id=record.id, name=record.name, state=record.state, runner=record.runner, backend=record.backend,
        frames=record.frames, done=progress.done, progress=progress.done / record.frames if record.frames else 0.0,
        eta_seconds=progress.eta_seconds, created=record.created, started=record.started,
        finished=record.finished, video=record.video, report=record.report, error=record.error, fps=record.fps,
        bpm=record.bpm, beats=record.beats,
        links=JobLinks(status=base, cancel=f"{base}/cancel", video=f"{base}/video", report=f"{base}/report",
                       latest_frame=f"{base}/frames/latest", files=f"{base}/files"),
    )


def _find(runner: Runner, job_id: str) -> JobRecord:
    try:
        return runner.get(job_id)
    except JobNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}") from None


# ----- Routes ----------------------------------------------------------------------------------------------------


@router.get("/health", response_model=Health, tags=["service"])
def health(runner: RunnerDep) -> Health:
    """Is the API up? (No token needed.)"""
    return Health(status="ok", version=__version__, runner=runner.kind)


@router.get("/openapi.json", dependencies=_AUTH, include_in_schema=False)
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.post("/jobs", dependencies=_AUTH, response_model=JobStatus, status_code=status.HTTP_202_ACCEPTED,
             tags=["jobs"], responses={422: {"model": Problems, "description": "The job spec is invalid: each "
                                                                             "entry's loc names the field."}})
def submit(request: JobRequest, response: Response, settings: SettingsDep, runner: RunnerDep) -> JobStatus:
    """Queue a job. It renders in the background; follow it at `links.status`."""
    job = validate_request(request, media=settings.media, osc_allow=settings.osc_allow)
    try:
        record = runner.submit(job, request)
    except InputError as exc:  # e.g. the farm refused the priority
        raise JobValidationError([{"loc": ["body", exc.field.lstrip("-")], "msg": str(exc),
                                   "type": "value_error", "field": exc.field.lstrip("-")}]) from None
    response.headers["Location"] = f"/jobs/{record.id}"
    return _status_of(runner, record)


@router.get("/jobs", dependencies=_AUTH, response_model=list[JobStatus], tags=["jobs"])
def list_jobs(runner: RunnerDep) -> list[JobStatus]:
    """Every job this API knows, newest first."""
    return [_status_of(runner, r) for r in runner.list()]


@router.get("/jobs/{job_id}", dependencies=_AUTH, response_model=JobStatus, tags=["jobs"])
def job_status(job_id: str, runner: RunnerDep) -> JobStatus:
    """State, progress (frames done, ETA), and the outputs once there."""
    return _status_of(runner, _find(runner, job_id))


@router.post("/jobs/{job_id}/cancel", dependencies=_AUTH, response_model=JobStatus, tags=["jobs"],
             responses={409: {"description": "The job has already ended."}})
def cancel(job_id: str, runner: RunnerDep) -> JobStatus:
    """Cancel a queued or running job. Finished frames are kept: submitting the same job again resumes it."""
    record = _find(runner, job_id)
    if record.state in TERMINAL:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} is {record.state}")
    return _status_of(runner, runner.cancel(job_id))


def _stream(record: JobRecord, name: str, media_type: str | None = None, *, inline: bool = False) -> Response:
    store = record.store()
    local = store.local_path(name)
    media_type = media_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    disposition = "inline" if inline else "attachment"
    if local is not None:
        if not Path(local).is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{name} is not there (any more)")
        return FileResponse(local, media_type=media_type, filename=name, content_disposition_type=disposition)
    remote = store.path(name)
    if not store.exists(name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{name} is not there (any more)")

    def chunks() -> Iterator[bytes]:
        with store.fs.open(remote, "rb") as handle:
            while block := handle.read(1 << 20):
                yield block

    return StreamingResponse(chunks(), media_type=media_type,
                             headers={"Content-Disposition": f'{disposition}; filename="{name}"'})


@router.get("/jobs/{job_id}/video", dependencies=_AUTH, tags=["outputs"],
            responses={200: {"content": {"video/mp4": {}, "video/quicktime": {}}}, 409: {}})
def video(job_id: str, runner: RunnerDep) -> Response:
    """Download the finished video."""
    record = _find(runner, job_id)
    if record.state != "completed" or not record.video:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} is {record.state}: no video yet")
    return _stream(record, record.video)


@router.get("/jobs/{job_id}/report", dependencies=_AUTH, tags=["outputs"], response_class=HTMLResponse)
def report(job_id: str, runner: RunnerDep) -> Response:
    """The job's HTML report (made now for a job still rendering)."""
    from framefarm.report import REPORT_NAME, write_report

    record = _find(runner, job_id)
    if record.state != "completed" or not record.store().exists(REPORT_NAME):
        if not record.store().exists("job.json"):
            raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} has not started yet")
        write_report(record.out, record.name, preview=False)
    return _stream(record, REPORT_NAME, "text/html; charset=utf-8", inline=True)


@router.get("/jobs/{job_id}/frames/latest", dependencies=_AUTH, tags=["outputs"],
            responses={200: {"content": {"image/png": {}}}})
def latest_frame(job_id: str, runner: RunnerDep) -> Response:
    """The most recently finished frame (PNG): a live look at a running job."""
    from framefarm.report.collect import done_frames

    record = _find(runner, job_id)
    store = record.store()
    _done, latest = done_frames(store, None)
    if latest is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no finished frame yet")
    try:
        data = store.read_frame_bytes(latest)
    except FileNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the frame is gone") from None
    return Response(data, media_type="image/png", headers={"X-Frame-Index": str(latest)})


@router.get("/jobs/{job_id}/files", dependencies=_AUTH, tags=["outputs"], response_model=list[dict[str, Any]])
def files(job_id: str, runner: RunnerDep) -> list[dict[str, Any]]:
    """The files beside the frames: video, report, job.json, plan.json, manifest.json, timings.json."""
    return _files(_find(runner, job_id))


@router.get("/jobs/{job_id}/files/{name}", dependencies=_AUTH, tags=["outputs"])
def file(job_id: str, name: str, runner: RunnerDep) -> Response:
    """Download one of the files `/jobs/{id}/files` lists."""
    record = _find(runner, job_id)
    if name not in {f["name"] for f in _files(record)}:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no file {name!r} in job {job_id}")
    return _stream(record, name)


def _files(record: JobRecord) -> list[dict[str, Any]]:
    from framefarm.report.collect import listing

    store = record.store()
    listed = []
    for entry in listing(store, store.job_dir):
        name = posixpath.basename(str(entry["name"]).rstrip("/"))
        if entry.get("type") == "directory" or TEMP_MARKER in name or ".partial" in name:
            continue
        listed.append({"name": name, "size": entry.get("size")})
    return sorted(listed, key=lambda f: f["name"])
