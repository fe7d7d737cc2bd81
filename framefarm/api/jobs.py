"""What the API accepts and returns, and how a submitted job spec is checked.

A submission is the job spec as a job file would hold it (TOML as JSON; it may name a ``preset``), plus ``--set``
style overrides and how to run it. It is checked exactly as ``framefarm render`` checks a job file
(:func:`framefarm.job.resolve_job_dict`, then the job models); every problem becomes one entry of a 422 answer in
FastAPI's own shape, ``{"detail": [{"loc": ["body", "job", "motion", "zoom"], "msg": …, "type": …}]}``, whose
``loc`` names the field and whose ``field`` repeats it dotted (``"motion.zoom"``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from framefarm.api.access import MediaRoots, PathsRefused, check_osc, confine_job, confine_read_at_validation
from framefarm.api.osc import OscTarget
from framefarm.errors import InputError
from framefarm.job import KINDS, AnyJob, JobSpec, resolve_job_dict

State = Literal["queued", "running", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
_JOB_ADAPTER: TypeAdapter[AnyJob] = TypeAdapter(JobSpec)


class JobRequest(BaseModel):
    """A job to render."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"job": {"preset": "zoom-tunnel", "name": "tunnel", "frames": 48, "width": 512, "height": 512},
         "overrides": ["motion.zoom=0:(1.03)"], "backend": "preview"},
    ]})

    job: dict[str, Any] = Field(description="The job spec as a job file holds it (see components.schemas.JobSpec); "
                                            'it may start from a shipped preset: {"preset": "zoom-tunnel", …}.')
    overrides: list[str] = Field(default_factory=list,
                                 description='Overrides as with `--set` on the command line: ["frames=24"].')
    backend: str = Field("preview", description="Renderer: preview (weight-free) or diffusers.")
    chunk_size: int | None = Field(None, ge=1, description="Frames per chunk task (automatic by default).")
    priority: int = Field(10, ge=1, description="Farm runner only: Prefect work-queue priority, 1 runs first.")
    osc: str | None = Field(None, description='Also send the OSC "clip ready" message to HOST:PORT when done; '
                                              "it must be one the operator allowed (`--osc-allow`).")


class JobLinks(BaseModel):
    status: str
    cancel: str
    video: str
    report: str
    latest_frame: str
    files: str


class JobStatus(BaseModel):
    """A job as the API shows it."""

    id: str
    name: str
    state: State
    runner: Literal["local", "farm"]
    backend: str
    frames: int = Field(description="Frames planned.")
    done: int = Field(description="Frames finished (resumed ones included).")
    progress: float = Field(description="done / frames, 0 … 1.")
    eta_seconds: float | None = Field(None, description="Seconds left, from this run's frame rate so far.")
    created: str
    started: str | None = None
    finished: str | None = None
    video: str | None = Field(None, description="The finished video's file name (download: links.video).")
    report: str | None = Field(None, description="The report's file name (links.report).")
    error: str | None = None
    fps: float
    bpm: float | None = None
    beats: int | None = None
    links: JobLinks


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    runner: Literal["local", "farm"]


class ProblemDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    field: str | None = None


class Problems(BaseModel):
    detail: list[ProblemDetail]


class JobValidationError(Exception):
    """A submitted job spec that does not validate; ``errors`` are FastAPI-style 422 detail entries."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e.get('field') or '.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def _path(parts: list[Any]) -> list[str | int]:
    return [int(p) if isinstance(p, str) and p.isdigit() else p for p in parts]


def _problem(loc: list[Any], msg: str, kind: str, field: str | None = None) -> dict[str, Any]:
    loc = _path(loc)
    return {"loc": loc, "msg": msg, "type": kind,
            "field": field if field is not None else ".".join(str(p) for p in loc[2:] if p != "body")}


def _dotted(field: str) -> list[str] | None:
    """``motion.zoom`` → ``["motion", "zoom"]``; ``None`` for subjects that are not field paths (``--set``)."""
    if not field or any(c in field for c in " /\\") or field.startswith("-"):
        return None
    return field.split(".")


def input_error_problem(exc: InputError, *, where: list[str]) -> dict[str, Any]:
    """One 422 entry for an :class:`InputError` raised while reading the spec."""
    path = _dotted(exc.field)
    if path is None:
        return _problem([*where], str(exc), "value_error", field=where[-1])
    return _problem(["body", "job", *path], str(exc), "value_error")


def validate_request(request: JobRequest, *, media: MediaRoots | None = None,
                     osc_allow: tuple[OscTarget, ...] = ()) -> AnyJob:
    """The request's job, resolved (preset, overrides), validated and confined to ``media`` (its file fields
    rewritten to the resolved paths), or :class:`JobValidationError`. Without ``media`` no path field is allowed;
    ``osc_allow``: the OSC targets a job may name (none by default).
    """
    from framefarm.renderers import get_renderer

    try:
        get_renderer(request.backend)
    except InputError as exc:
        raise JobValidationError([_problem(["body", "backend"], str(exc), "value_error", "backend")]) from None
    try:
        data = resolve_job_dict(request.job, request.overrides)
    except InputError as exc:
        where = ["body", "overrides"] if exc.field == "--set" else ["body", "job", exc.field]
        raise JobValidationError([input_error_problem(exc, where=where)]) from None
    if "kind" not in data:
        raise JobValidationError([_problem(["body", "job", "kind"], f"kind is missing: use one of {', '.join(KINDS)} "
                                           "(or name a preset)", "missing")])
    if data["kind"] not in KINDS:
        raise JobValidationError([_problem(["body", "job", "kind"], f"{data['kind']!r} is not a job kind: use one of "
                                           f"{', '.join(KINDS)}", "literal_error")])
    try:  # validation reads a Parseq manifest: only one the client may name
        data = confine_read_at_validation(data, media or MediaRoots())
    except PathsRefused as exc:
        raise JobValidationError([input_error_problem(p, where=["body", "job"]) for p in exc.problems]) from None
    try:
        job = _JOB_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise JobValidationError(_pydantic_problems(exc)) from None
    # Paths first: nothing below may open, hash or even stat a file the client is not allowed to name.
    problems = []
    try:
        job = confine_job(job, media or MediaRoots())
    except PathsRefused as exc:
        problems += [input_error_problem(problem, where=["body", "job"]) for problem in exc.problems]
    if request.osc is not None:
        try:
            check_osc(request.osc, osc_allow)
        except InputError as exc:
            problems.append(_problem(["body", "osc"], str(exc), "value_error", "osc"))
    if problems:
        raise JobValidationError(problems)
    # The files the job reads must exist on this machine: say so now, not after a queue wait (the render checks
    # them first thing too, with the same message).
    from framefarm.job_inputs import input_hashes

    try:
        input_hashes(job, request.backend)
    except InputError as exc:
        raise JobValidationError([input_error_problem(exc, where=["body", "job"])]) from None
    return job


def _pydantic_problems(exc: ValidationError) -> list[dict[str, Any]]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = [str(p) if not isinstance(p, int) else p for p in error["loc"]]
        if loc and loc[0] in KINDS:  # the discriminated union's tag is not part of the user's field path
            loc = loc[1:]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, InputError):  # our validators name the field themselves ("motion.zoom")
            path = _dotted(cause.field)
            problems.append(_problem(["body", "job", *(path or loc)], str(cause), "value_error"))
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "is not a known field (a typo?)"
        problems.append(_problem(["body", "job", *loc], message, error["type"]))
    return problems


def job_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The job spec's JSON schema for the OpenAPI document: ``(schema, definitions)``, refs into components."""
    schema = _JOB_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    schema.setdefault("title", "JobSpec")
    schema["description"] = ("A framefarm job (deforum, animatediff or video2video), as `framefarm validate` prints "
                             "it. A submission may also give only some fields over a shipped `preset`.")
    return schema, definitions
