"""``framefarm api``: serve the HTTP API (submit, status, cancel, download) for TouchDesigner and other tools."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

MIN_TOKEN_LENGTH = 16


def register(app: typer.Typer) -> None:
    app.command("api")(api)


def api(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8787,
    token: Annotated[Optional[str], typer.Option("--token", envvar="FRAMEFARM_API_TOKEN", show_envvar=True,
                                                 help="API token clients must send (prefer the environment variable: "
                                                      "a command line is visible to other users).")] = None,
    out: Annotated[str, typer.Option("--out", help="Output root jobs render into (folder or fsspec URL).")]
    = "renders",
    runner: Annotated[str, typer.Option("--runner", help="local (render processes here) or farm (Prefect "
                                                         "deployment; needs PREFECT_API_URL and farm-setup).")]
    = "local",
    state_dir: Annotated[Optional[str], typer.Option("--state-dir", help="Local runner's queue and logs (default: "
                                                                         "OUT/.framefarm-api).")] = None,
    parallel: Annotated[int, typer.Option("--parallel", min=1, max=64, help="Local runner: jobs at once.")] = 1,
    osc: Annotated[Optional[list[str]], typer.Option("--osc", help='Send the OSC "clip ready" message to HOST:PORT '
                                                                  "when a job finishes (repeatable).")] = None,
    media_root: Annotated[Optional[list[str]], typer.Option("--media-root", help="A folder submitted jobs may read "
                                                                   "files from (repeatable; none: path fields are "
                                                                   "refused).")] = None,
    osc_allow: Annotated[Optional[list[str]], typer.Option("--osc-allow", help="A HOST:PORT a submitted job may "
                                                                  "name as its osc target (repeatable).")] = None,
    print_openapi: Annotated[bool, typer.Option("--openapi", help="Print the OpenAPI document and exit.")] = False,
) -> None:
    """Serve the HTTP API: POST /jobs (JSON job spec), GET /jobs/ID, POST /jobs/ID/cancel, GET /jobs/ID/video …"""
    from framefarm.api.access import MediaRoots
    from framefarm.api.app import ApiSettings, create_app
    from framefarm.api.osc import OscTarget
    from framefarm.cli_output import err, fail
    from framefarm.errors import FramefarmError, InputError

    if print_openapi:
        from framefarm.api.runner import FarmRunner

        app = create_app(ApiSettings(token="unused", out=out, runner="farm"), runner=FarmRunner(out))
        typer.echo(json.dumps(app.openapi(), indent=2))
        return
    try:
        if not token:
            raise InputError("--token", problem="is required (every route but /health needs it)",
                             fix="Set FRAMEFARM_API_TOKEN, e.g. export FRAMEFARM_API_TOKEN=$(openssl rand -hex 24)")
        if runner not in ("local", "farm"):
            raise InputError("--runner", runner, "is not a runner", "Use local or farm")
        targets = tuple(OscTarget.parse(t) for t in osc or [])
        allowed = tuple(OscTarget.parse(t, field="--osc-allow") for t in osc_allow or [])
        media = MediaRoots.from_folders(media_root or [])
    except FramefarmError as exc:
        fail(exc)
    if len(token) < MIN_TOKEN_LENGTH:
        err.print(f"warning: the API token is shorter than {MIN_TOKEN_LENGTH} characters; use a long random one")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"warning: serving on {host}: the token travels in clear text unless a TLS proxy is in front")
    settings = ApiSettings(token=token, out=out, runner=runner, state_dir=state_dir, parallel=parallel, osc=targets,
                           media=media, osc_allow=allowed)
    from framefarm.api.server import serve

    err.print(f"framefarm API on http://{host}:{port} (runner: {runner}, out: {out})")
    serve(settings, host=host, port=port)
