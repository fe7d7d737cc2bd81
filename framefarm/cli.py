"""The ``framefarm`` command.

Contract (other tools and later checks rely on it):

* the finished video's path is the last line of stdout of ``render`` and ``demo``; progress goes to stderr;
* exit code 0 on success, 2 on invalid input (message on stderr, no traceback), 1 on a failure during work,
  130 when stopped by SIGINT or SIGTERM (finished frames kept, the resume command on stderr).

What ``render`` and ``demo`` do with a loaded job is in :mod:`framefarm.cli_render`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from framefarm.cli_output import err, fail
from framefarm.errors import FramefarmError, InputError

app = typer.Typer(
    name="framefarm",
    help="Batch render farm for Stable Diffusion animation: Deforum keyframes, AnimateDiff, video-to-video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
DEMO_PRESET = "zoom-tunnel"

JobArg = Annotated[Path, typer.Argument(help="Job file (TOML or JSON).", show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: --set motion.zoom='0:(1.02)'.")]
ChunkOpt = Annotated[Optional[int], typer.Option("--chunk-size", min=1, help="Frames per chunk task.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="Renderer: preview (weight-free) or diffusers.")]
# A string, not a Path: Path("s3://bucket/renders") is "s3:/bucket/renders", a local folder named "s3:".
OutOpt = Annotated[str, typer.Option("--out", help="Output root, a folder or a store URL (s3://bucket/renders): "
                                                  "frames land in OUT/<job>/frames/.")]


def _render(job, backend: str, out: str, chunk_size: int | None, gpus: str | None = None,
            dask: str | None = None, wait: bool = False) -> None:
    from framefarm.cli_render import run_render

    run_render(job, backend, out, chunk_size, gpus, dask, wait)


@app.command()
def render(
    job_file: JobArg,
    backend: BackendOpt = "preview",
    out: OutOpt = "renders",
    chunk_size: ChunkOpt = None,
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="One process per GPU id, e.g. 0,1,2,3.")] = None,
    dask: Annotated[Optional[str], typer.Option(
        "--dask", help="Run chunks on an existing Dask cluster, e.g. tcp://render-head:8786.")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="When another render holds the job folder, wait for it instead of exiting 2.")] = False,
    set_: SetOpt = None,
) -> None:
    """Render a job and print the finished video's path (last line of stdout)."""
    from framefarm.job import load_job

    try:
        job = load_job(job_file, set_ or [])
    except FramefarmError as exc:
        fail(exc)
    _render(job, backend, out, chunk_size, gpus, dask, wait)


@app.command()
def plan(
    job_file: JobArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    backend: BackendOpt = "preview",
    chunk_size: ChunkOpt = None,
    frames: Annotated[Optional[str], typer.Option("--frames", help="Also list per-frame values for frames A:B.")] = None,
    set_: SetOpt = None,
) -> None:
    """Show how a job splits into chunks (frame ranges, seeds, keys) without rendering; --frames A:B adds values."""
    from framefarm.animation.plan import plan_job
    from framefarm.job_inputs import input_hashes, resolve_job_batch_size
    from framefarm.job import load_job
    from framefarm.renderers import get_renderer

    try:
        job, _ = resolve_job_batch_size(load_job(job_file, set_ or []), None, backend)
        the_plan = plan_job(job, renderer=get_renderer(backend).id, chunk_size=chunk_size,
                            input_hashes=input_hashes(job, backend))
    except FramefarmError as exc:
        fail(exc)
    summary = the_plan.summary()
    rows = _frame_rows(job, frames) if frames else None
    if as_json:
        typer.echo(json.dumps({**summary, "frame_values": rows} if rows is not None else summary, indent=2))
        return
    variations = f" × {the_plan.variations} variations (stored frame t·{the_plan.variations} + v)" \
        if the_plan.variations > 1 else ""
    table = Table(title=f"{job.name}: {job.kind}, {job.frames} frames{variations}, {job.width}x{job.height} @ "
                  f"{job.fps:g} fps")
    for column in ("chunk", "frames", "seeds", "key"):
        table.add_column(column)
    for chunk in summary["chunks"]:
        seeds = chunk["seeds"]
        shown = ", ".join(map(str, seeds[:4])) + (" …" if len(seeds) > 4 else "")
        table.add_row(str(chunk["index"]), f"{chunk['start']}–{chunk['stop'] - 1}", shown, chunk["key"][:12])
    Console().print(table)
    if rows:
        _print_frame_rows(job, rows)


def _frame_rows(job, span: str) -> list[dict]:
    from framefarm.animation.schedules import frame_table

    try:
        start_text, _, stop_text = span.partition(":")
        start = int(start_text or 0)
        stop = min(job.frames, int(stop_text) if stop_text else job.frames)
        if not 0 <= start < stop:
            raise ValueError
    except ValueError:
        fail(InputError("--frames", span, "is not a frame range inside the job",
                        f"Use A:B with 0 <= A < B <= {job.frames}, e.g. 0:24"))
    return frame_table(job, range(start, stop))


def _print_frame_rows(job, rows: list[dict]) -> None:
    # The columns a reader checks first: camera for the job's mode, then what drives the diffusion.
    camera = ["zoom", "angle", "translation_x", "translation_y"]
    if getattr(job, "animation_mode", "2D") == "3D":
        camera = ["translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z"]
    columns = ["frame", "seed", *camera, "strength", "cfg_scale", "steps", "prompt"]
    columns = [c for c in columns if c in rows[0]]
    table = Table(title=f"{job.name}: per-frame values")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    Console().print(table)


@app.command()
def demo(
    preset: Annotated[str, typer.Option("--preset", help="Preset to render.")] = DEMO_PRESET,
    out: OutOpt = "renders",
    set_: SetOpt = None,
) -> None:
    """Render a built-in preset with the weight-free preview renderer; prints the video's path last."""
    from framefarm.job import job_from_preset

    try:
        job = job_from_preset(preset, set_ or [])
    except FramefarmError as exc:
        fail(exc)
    _render(job, "preview", out, None)


@app.command()
def presets(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the shipped presets (use one with preset = "name" in a job file)."""
    from framefarm.presets import preset_names, preset_summary

    rows = [preset_summary(name) for name in preset_names()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="framefarm presets")
    for column in ("name", "kind", "size", "fps", "frames", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["kind"], row["size"], f"{row['fps']:g}", str(row["frames"]), row["description"])
    Console().print(table)


@app.command()
def validate(job_file: JobArg, set_: SetOpt = None) -> None:
    """Check a job file and print the resolved job (preset and overrides applied) as JSON."""
    from framefarm.job import load_job

    try:
        job = load_job(job_file, set_ or [])
    except FramefarmError as exc:
        fail(exc)
    typer.echo(json.dumps(job.model_dump(mode="json"), indent=2))


def _register_extra_commands() -> None:
    from framefarm.commands import register_all

    register_all(app)


_register_extra_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted: finished frames are kept; run the same command again to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
