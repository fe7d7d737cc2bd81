"""A throw-away PostgreSQL server for tests: Debian's binaries, a fresh cluster in a temp folder, a free port.

Prefect wants PostgreSQL once more than one worker talks to its server (SQLite answers "database is locked"), so the
multi-worker test runs the server on PostgreSQL as production does. ``make postgres`` installs Debian's package
where it is missing (root + apt-get); without it the test is skipped, saying so.

PostgreSQL refuses to run as root: under root the cluster belongs to the ``postgres`` system user (created by the
Debian package) and its commands run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 60
DATABASE = "prefect"
USER = "framefarm"


def postgres_bin() -> Path | None:
    """The folder holding initdb/postgres: on PATH, or Debian's /usr/lib/postgresql/<version>/bin (not on PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _as_owner() -> list[str]:
    """Command prefix that runs as a non-root user (postgres refuses root), or nothing when not root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        pytest.skip("PostgreSQL cannot run as root and runuser is missing to drop to the postgres user")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no postgres user to run PostgreSQL as (install Debian's "
                    "postgresql package: make postgres)")
    return ["runuser", "-u", "postgres", "--"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def postgres_database() -> Iterator[str]:
    """Start PostgreSQL on 127.0.0.1 with a fresh cluster; yield Prefect's connection URL; stop and delete it.

    Yields:
        ``postgresql+asyncpg://framefarm@127.0.0.1:PORT/prefect`` (trust authentication, local only).
    """
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (initdb not found): run `make postgres` (apt-get install postgresql)")
    prefix = _as_owner()
    # Not under pytest's tmp_path: that is private to root (0700) and the postgres user could not enter it.
    folder = Path(tempfile.mkdtemp(prefix="framefarm-pg-"))
    folder.chmod(0o755)
    data, sockets = folder / "data", folder / "sockets"
    for path in (data, sockets):
        path.mkdir()
        if prefix:
            shutil.chown(path, "postgres", "postgres")
    port = _free_port()
    server = None
    try:
        subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, timeout=120)
        # fsync off: a test database need not survive a power cut, and the shared CI disk is slow.
        server = subprocess.Popen(
            [*prefix, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=open(folder / "postgres.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while subprocess.run([*prefix, str(bin_dir / "createdb"), "-h", str(sockets), "-p", str(port), "-U", USER,
                              DATABASE], capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start:\n" + (folder / "postgres.log").read_text()[-2000:])
            time.sleep(0.3)
        yield f"postgresql+asyncpg://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # PostgreSQL's "fast shutdown"
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def psql(url: str, sql: str) -> str:
    """Run one SQL statement against the database of ``url`` (as the test user) and return its bare output."""
    bin_dir = postgres_bin()
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    psql_exe = shutil.which("psql") or str(bin_dir / "psql")
    run = subprocess.run([psql_exe, "-h", host, "-p", port, "-U", USER, "-d", DATABASE, "-tAc", sql],
                         capture_output=True, text=True, timeout=30, check=True)
    return run.stdout.strip()
