"""``framefarm report JOB``: make (or refresh) a job's ``report.html`` and print where it is (last stdout line).

JOB is a job folder (``renders/my-tunnel``, ``s3://bucket/renders/my-tunnel``), its ``job.json``, the job file it
was rendered from, or the job's name (for those two, ``--out`` says where, as for ``render``).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def resolve_target(target: str, out: str) -> tuple[str, str]:
    """``(store root, job name)`` for a job folder, a ``job.json``, a job file, or a remote job folder URL."""
    from framefarm.errors import InputError

    if "://" in target:
        url = target.rstrip("/")
        if url.endswith("/job.json"):
            url = url[: -len("/job.json")]
        root, _, name = url.rpartition("/")
        if not name or root.endswith(":/"):
            raise InputError("JOB", target, "is not a job folder URL", "Example: s3://bucket/renders/my-tunnel")
        return root, name
    path = Path(target)
    if path.is_dir():
        if not (path / "job.json").is_file():
            raise InputError("JOB", target, "is a folder without job.json",
                             "Give a job folder framefarm rendered into, e.g. renders/my-tunnel")
        path = path.resolve()
        return str(path.parent), path.name
    if path.is_file():
        in_job_folder = (path.parent / "frames").is_dir() or (path.parent / "plan.json").is_file()
        if path.name == "job.json" and in_job_folder:
            folder = path.resolve().parent
            return str(folder.parent), folder.name
        from framefarm.job import load_job

        job = load_job(path)
        return out, job.name
    if _is_job_name(target) and _has_job(out, target):
        return out, target  # a job's name: its folder under --out (``framefarm report my-tunnel --out renders``)
    raise InputError("JOB", target, f"no such job folder, job file, or job under --out {out!r}",
                     "Give a job's name (with --out), renders/<job>, its job.json, or the job's .toml file")


def _is_job_name(text: str) -> bool:
    from framefarm.job import JOB_NAME_PATTERN

    return re.fullmatch(JOB_NAME_PATTERN, text) is not None


def _has_job(out: str, name: str) -> bool:
    from framefarm.storage import FrameStore

    try:
        return FrameStore(out, name).exists("job.json")
    except OSError:  # an unreachable store: reported as "no such job" with the hint above
        return False


def _needs_refresh(root: str, name: str) -> bool:
    """A report is made again when there is none, the job is still rendering, or it finished after the report."""
    from framefarm.report import REPORT_NAME
    from framefarm.report.collect import listing, mtime
    from framefarm.storage import FrameStore

    store = FrameStore(root, name)
    entries = {posixpath.basename(str(e["name"])): e for e in listing(store, store.job_dir)}
    if REPORT_NAME not in entries or "manifest.json" not in entries:
        return True
    return mtime(entries[REPORT_NAME]) < mtime(entries["manifest.json"])


def report(
    target: Annotated[str, typer.Argument(metavar="JOB", help="Job name (with --out), job folder, its job.json, or the "
                                                              "job file.",
                                          show_default=False)],
    out: Annotated[str, typer.Option("--out", help="Output root, when JOB is a job file.")] = "renders",
    regenerate: Annotated[bool, typer.Option("--regenerate", help="Make the report again even if it is current.")]
    = False,
    open_it: Annotated[bool, typer.Option("--open", help="Open it in the default browser.")] = False,
) -> None:
    """Make or refresh a job's report.html (contact sheet, schedule plots, prompts, timings, video); print its path."""
    from framefarm.errors import FramefarmError
    from framefarm.report import report_location, write_report

    try:
        root, name = resolve_target(target, out)
        if regenerate or _needs_refresh(root, name):
            location = write_report(root, name)
        else:
            location = report_location(root, name)
    except FramefarmError as exc:
        from framefarm.cli_output import fail

        fail(exc)
    if open_it:
        import webbrowser

        webbrowser.open(location if "://" in location else Path(location).as_uri())
    typer.echo(location)
