"""``framefarm prefect-clean``: remove old flow runs and cached chunk results from Prefect's home (``~/.prefect``).

See :mod:`framefarm.flows.prefect_clean` for what is removed and why that is safe. With ``PREFECT_API_URL`` set, the
runs are deleted through that server (whose database is its operator's to compact); otherwise a local server is
started on Prefect's local database, and the SQLite file is compacted afterwards.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("prefect-clean")(prefect_clean)


def prefect_clean(
    older_than: Annotated[float, typer.Option("--older-than", min=0, help="Age in days of what is removed.")] = 14.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be removed.")] = False,
) -> None:
    """Remove framefarm's finished flow runs and cached chunk results older than --older-than days from Prefect's
    home; frames, manifests and videos are never touched."""
    import os

    from framefarm.cli_output import err, fail, quiet_prefect

    quiet_prefect()
    from framefarm.flows import prefect_clean as clean
    from framefarm.flows.local_server import use_local_server

    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=older_than)
    verb = "would remove" if dry_run else "removed"
    # 1. Cached chunk results: plain files, no server needed.
    files = clean.old_result_files(clean.result_storage(), cutoff)
    size = sum(f.stat().st_size for f in files)
    if not dry_run:
        for path in files:
            path.unlink(missing_ok=True)
    err.print(f"{verb} {len(files)} cached chunk result(s), {size / 1e6:.1f} MB, from {clean.result_storage()}",
              highlight=False, markup=False, soft_wrap=True)
    # 2. Flow runs, through a server: the configured one, or a local one on Prefect's own database.
    try:
        timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
        server = use_local_server(timeout)
    except RuntimeError as exc:
        fail(exc)
    try:
        runs = clean.delete_old_flow_runs(cutoff, dry_run)
    finally:
        if server is not None:
            server.stop()
    err.print(f"{verb} {runs} finished framefarm flow run(s) (and their task runs) older than {older_than:g} days",
              highlight=False, markup=False, soft_wrap=True)
    # 3. Give the space back: SQLite keeps deleted pages until VACUUM. Only a database no server of someone
    # else's holds open (we started and stopped the local one ourselves).
    database = clean.sqlite_database() if server is not None and not dry_run else None
    if database is not None and database.is_file():
        before = clean.database_bytes(database)
        if clean.compact_sqlite(database):
            err.print(f"compacted {database}: {before / 1e6:.1f} MB → {clean.database_bytes(database) / 1e6:.1f} MB",
                      highlight=False, markup=False, soft_wrap=True)
        else:
            err.print(f"{database} is in use by a render; it is compacted by the next prefect-clean",
                      highlight=False, markup=False, soft_wrap=True)
