"""``framefarm farm-window``: serve the overnight window flow on a cron schedule (blocks, like a worker)."""

from __future__ import annotations

from typing import Annotated

import typer


def farm_window_command(
    start: Annotated[str, typer.Option(help="Window opens (HH:MM, local time).")] = "22:00",
    end: Annotated[str, typer.Option(help="Window closes (HH:MM); before start means the next morning.")] = "07:00",
    pool: Annotated[str, typer.Option(help="Work pool to open and close.")] = "framefarm",
    every: Annotated[int, typer.Option(help="Check every N minutes.", min=1, max=59)] = 5,
    once: Annotated[bool, typer.Option(help="Apply the window now and exit (for cron or systemd timers).")] = False,
) -> None:
    """Render only inside a time window: pause the pool outside it; running jobs stop at a chunk boundary."""
    from framefarm.cli_output import fail
    from framefarm.errors import FramefarmError
    from framefarm.flows.window import Window, apply_window, farm_window

    try:
        window = Window.parse(start, end)
        if once:
            typer.echo("open" if apply_window(pool, window) else "closed")
            return
    except FramefarmError as exc:
        fail(exc)
    farm_window.serve(name=f"window-{pool}", cron=f"*/{every} * * * *",
                      parameters={"pool": pool, "start": start, "end": end})


def register(app: typer.Typer) -> None:
    app.command("farm-window")(farm_window_command)
