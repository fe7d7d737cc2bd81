"""Retention for what renders leave in Prefect's home (``~/.prefect``): old flow runs and cached chunk results.

Every render adds a flow run with one task run per chunk (states, logs, artifacts) to Prefect's database, and one
persisted result per chunk to Prefect's result storage (``PREFECT_LOCAL_STORAGE_PATH``, ``~/.prefect/storage``).
Nothing removes them: Prefect's own database vacuum only deletes flow runs when a long-running server has it
switched on (``PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED=flow_runs``), which the CLI's short-lived server never runs
long enough to do.

What is safe to delete, and why: a finished flow run is history only. A cached chunk result only lets a rerun skip
asking the manifest, which is the truth about finished frames anyway: a rerun without it renders nothing more, it
just checks the chunk's frames in the frame store. Frames, manifests and videos are never touched here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
from pathlib import Path

# framefarm's flows; other flows in the same Prefect database belong to someone else.
FRAMEFARM_FLOWS = ("render-job", "farm-window")
BATCH = 200


def old_result_files(storage: Path, cutoff: dt.datetime) -> list[Path]:
    """Result files in ``storage`` last written before ``cutoff``."""
    if not storage.is_dir():
        return []
    stamp = cutoff.timestamp()
    return [p for p in storage.rglob("*") if p.is_file() and p.stat().st_mtime < stamp]


def delete_old_flow_runs(cutoff: dt.datetime, dry_run: bool) -> int:
    """Delete framefarm's finished flow runs (with their task runs) that were due to start before ``cutoff``."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    finished = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]
    run_filter = FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(before_=cutoff),
                               state=FlowRunFilterState(type=FlowRunFilterStateType(any_=finished)))
    flow_filter = FlowFilter(name=FlowFilterName(any_=list(FRAMEFARM_FLOWS)))
    deleted = 0
    offset = 0
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(flow_filter=flow_filter, flow_run_filter=run_filter, limit=BATCH,
                                         offset=offset)
            if not runs:
                return deleted
            for run in runs:
                if not dry_run:
                    client.delete_flow_run(run.id)
                deleted += 1
            if dry_run:
                offset += len(runs)  # nothing was removed: page on


def sqlite_database() -> Path | None:
    """The SQLite file of Prefect's database, when that is what it uses (the default for a local install)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    text = url.get_secret_value() if url is not None and hasattr(url, "get_secret_value") else str(url or "")
    if not text.startswith("sqlite"):
        return None
    return Path(text.split(":///", 1)[-1]).expanduser()


def compact_sqlite(path: Path) -> bool:
    """``VACUUM`` the file so deleted rows give their space back; ``False`` when another process has it open."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=2.0)) as connection:
            connection.execute("VACUUM")
            # Prefect runs SQLite in WAL mode: fold the log back into the file and empty it.
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError:  # "database is locked": a render's server is using it right now
        return False
    return True


def database_bytes(path: Path) -> int:
    """The database's size on disk, its write-ahead log included."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.is_file())


def result_storage() -> Path:
    from prefect.settings import get_current_settings

    return Path(os.path.expanduser(str(get_current_settings().results.local_storage_path)))
