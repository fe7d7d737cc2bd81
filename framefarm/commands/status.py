"""``framefarm status``: running and queued jobs with progress bars and ETA.

Three sources, merged: the job folders under ``--out`` (local renders, from their frame records), the API's queue
when ``framefarm api`` runs over the same ``--out`` (its ``.framefarm-api`` folder), and the Prefect farm when
``PREFECT_API_URL`` is set (``--farm/--no-farm`` to force). ``--json`` prints one JSON list; ``--watch N``
refreshes every N seconds until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

ACTIVE = ("running", "queued")


@dataclass(frozen=True)
class Row:
    """One job as ``status`` shows it."""

    job: str
    source: str  # local | api | farm
    state: str  # running | queued | stopped | complete | empty | failed | cancelled …
    frames: int
    done: int
    eta_seconds: float | None
    rate: float | None = None
    run_id: str | None = None
    where: str | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.frames) if self.frames else 0.0


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def _local_rows(out: str) -> list[Row]:
    from framefarm.report.progress import scan

    return [Row(job=p.job, source="local", state=p.state, frames=p.frames, done=p.done, eta_seconds=p.eta_seconds,
                rate=p.rate, where=f"{out.rstrip('/')}/{p.job}") for p in scan(out)]


def _api_rows(out: str) -> list[Row]:
    """Jobs the API (local runner) holds for this output root that have not ended."""
    if "://" in out:
        return []
    rows = []
    for path in sorted((Path(out) / ".framefarm-api" / "jobs").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("state") in ACTIVE:
            rows.append(Row(job=str(record.get("name")), source="api", state=str(record["state"]),
                            frames=int(record.get("frames") or 0), done=0, eta_seconds=None,
                            run_id=str(record.get("id")), where=str(record.get("out"))))
    return rows


def _farm_rows() -> tuple[list[Row], str | None]:
    try:
        from framefarm.flows.farm_queue import eta_seconds, list_jobs

        jobs = list_jobs()
    except Exception as exc:  # the server is down or unreachable: say so, show the rest
        return [], f"Prefect farm not reachable ({type(exc).__name__}: {str(exc)[:120]})"
    states = {"Running": "running", "Scheduled": "queued", "Pending": "queued", "Late": "queued",
              "AwaitingRetry": "queued", "Paused": "paused", "Completed": "complete", "Failed": "failed",
              "Crashed": "failed", "Cancelled": "cancelled", "Cancelling": "cancelling"}
    return [Row(job=j.job, source="farm", state=states.get(j.state, j.state.lower()), frames=j.frames, done=j.done,
                eta_seconds=eta_seconds(j), run_id=j.run_id, where=j.out) for j in jobs], None


def collect_rows(out: str, *, farm: bool | None, show_all: bool) -> tuple[list[Row], list[str]]:
    """Rows to show (active first) and warnings."""
    warnings: list[str] = []
    rows = _local_rows(out)
    api = _api_rows(out)
    # A job the API is rendering has a local folder already: show it once, as the local render it is.
    running_locally = {r.job for r in rows if r.state == "running"}
    rows += [r for r in api if not (r.state == "running" and r.job in running_locally)]
    use_farm = farm if farm is not None else bool(os.environ.get("PREFECT_API_URL"))
    if use_farm:
        farm_rows, problem = _farm_rows()
        if problem:
            warnings.append(problem)
        # A farm job's frames land in a store too (maybe this one): the farm's row says more (run id, queue).
        farm_names = {r.job for r in farm_rows if r.state in ACTIVE}
        rows = [r for r in rows if not (r.source == "local" and r.job in farm_names)] + farm_rows
    if not show_all:
        rows = [r for r in rows if r.state in (*ACTIVE, "stopped", "paused", "cancelling")]
    order = {"running": 0, "queued": 1, "paused": 2, "cancelling": 2, "stopped": 3}
    rows.sort(key=lambda r: (order.get(r.state, 4), r.job))
    return rows, warnings


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _table(rows: list[Row], title: str):
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    table = Table(title=title, expand=False)
    for column in ("job", "source", "state", "progress", "frames", "%", "fps", "ETA"):
        table.add_column(column, justify="right" if column in ("frames", "%", "fps", "ETA") else "left")
    colours = {"running": "yellow", "queued": "cyan", "stopped": "red", "complete": "green"}
    for row in rows:
        bar = ProgressBar(total=max(1, row.frames), completed=row.done, width=28,
                          complete_style="yellow" if row.state == "running" else "green")
        state = f"[{colours.get(row.state, 'white')}]{row.state}[/]"
        table.add_row(row.job, row.source + (f" {row.run_id[:8]}" if row.run_id else ""), state, bar,
                      f"{row.done}/{row.frames}", f"{row.fraction:4.0%}",
                      f"{row.rate:.2f}" if row.rate and row.state == "running" else "",
                      _eta(row.eta_seconds))
    return table


def status(
    out: Annotated[str, typer.Option("--out", help="Output root to scan (a folder or an fsspec URL).")] = "renders",
    farm: Annotated[Optional[bool], typer.Option("--farm/--no-farm", help="Ask the Prefect farm too (default: when "
                                                                          "PREFECT_API_URL is set).")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also finished, failed and cancelled jobs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    watch: Annotated[Optional[float], typer.Option("--watch", min=0.5, help="Refresh every N seconds.")] = None,
) -> None:
    """Running and queued jobs with progress bars and ETA (local renders, the API queue, the Prefect farm)."""
    from rich.console import Console, Group
    from rich.text import Text

    def snapshot():
        rows, warnings = collect_rows(out, farm=farm, show_all=show_all)
        parts: list[Any] = [Text(w, style="red") for w in warnings]
        if rows:
            parts.append(_table(rows, f"framefarm status · {out}"))
        else:
            parts.append(Text(f"no running or queued jobs under {out}" + ("" if show_all else " (--all shows "
                                                                                             "finished ones)")))
        return rows, warnings, Group(*parts)

    if as_json:
        rows, warnings = collect_rows(out, farm=farm, show_all=show_all)
        for warning in warnings:
            typer.echo(warning, err=True)
        typer.echo(json.dumps([{**asdict(r), "progress": r.fraction} for r in rows], indent=2))
        return
    console = Console()
    if watch is None:
        console.print(snapshot()[2])
        return
    from rich.live import Live

    with Live(snapshot()[2], console=console, refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(watch)
                live.update(snapshot()[2])
        except KeyboardInterrupt:
            pass
