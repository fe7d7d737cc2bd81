"""What every ``framefarm`` command prints and how it exits on an error: the stderr console, :func:`fail`, and the
Prefect settings the commands that run flows share. A module of its own so the commands (``framefarm.commands``,
``framefarm.cli_render``) use it without importing ``framefarm.cli``, which imports them."""

from __future__ import annotations

import os
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from framefarm.errors import InputError

err = Console(stderr=True)


def quiet_prefect() -> None:
    # Prefect's per-task INFO lines would scroll the progress bar away; warnings and errors still show.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # The ephemeral server would try to send telemetry; render boxes are often offline, and it is noise.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect gives its ephemeral server 20 s to come up; a 2-core render box that is already decoding or
    # encoding often needs longer (measured: 23 s under a parallel test run), and the render would fail
    # before its first frame. A long wait costs nothing when the server is quick.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


# An error message is for a person: a library's error that quotes a whole request (a job of a megabyte) is cut here.
MAX_ERROR_CHARS = 2000


def shorten(text: str) -> str:
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return f"{text[:MAX_ERROR_CHARS]} … ({len(text) - MAX_ERROR_CHARS} more characters left out)"


def fail(exc: BaseException) -> NoReturn:
    """Report an error the CLI way and exit: 2 for invalid input, 1 for a failure during work."""
    if isinstance(exc, InputError):
        err.print(f"[bold red]invalid input[/] {escape(shorten(str(exc)))}", highlight=False, markup=True,
                  soft_wrap=True)
        raise typer.Exit(2)
    err.print(f"[bold red]render failed[/] {escape(shorten(str(exc)))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
