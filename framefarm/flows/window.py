"""Overnight rendering: the farm's work pool is open only inside a time window (e.g. 22:00–07:00).

A small flow, served on a cron schedule (``framefarm farm-window``), pauses the pool outside the window and resumes
it inside. A paused pool hands out no new runs. A job already running checks its pool between chunks: when the pool
is paused it finishes the chunks in hand, starts no new ones, requeues itself for the window's next opening (its
finished frames are kept, so the new run picks up where this one stopped) and ends.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass

from prefect import flow, get_client
from prefect.client.schemas.actions import WorkPoolUpdate

from framefarm.errors import FramefarmError, InputError

# How often a running job asks whether its pool was paused: a server call, so not per frame; chunks take minutes.
POOL_CHECK_INTERVAL_S = float(os.environ.get("FRAMEFARM_POOL_CHECK_S", "15"))


class RenderPaused(FramefarmError):
    """The job stopped at a chunk boundary because its pool was paused (outside the render window)."""


@dataclass(frozen=True)
class Window:
    """A daily time window; ``start > end`` wraps past midnight (22:00–07:00)."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, start: str, end: str) -> Window:
        try:
            return cls(dt.time.fromisoformat(start), dt.time.fromisoformat(end))
        except ValueError:
            raise InputError("window", f"{start}-{end}", "is not a pair of HH:MM times",
                             "Example: --start 22:00 --end 07:00") from None

    def contains(self, moment: dt.datetime) -> bool:
        now = moment.time()
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def next_opening(self, moment: dt.datetime) -> dt.datetime:
        opening = moment.replace(hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0)
        return opening if opening > moment else opening + dt.timedelta(days=1)


def apply_window(pool: str, window: Window, now: dt.datetime | None = None) -> bool:
    """Pause or resume ``pool`` for the time ``now`` (local time by default). Returns whether the pool is open."""
    now = now or dt.datetime.now().astimezone()
    open_now = window.contains(now)
    with get_client(sync_client=True) as client:
        if client.read_work_pool(pool).is_paused == open_now:
            client.update_work_pool(pool, WorkPoolUpdate(is_paused=not open_now))
    return open_now


@flow(name="farm-window")
def farm_window(pool: str = "framefarm", start: str = "22:00", end: str = "07:00") -> bool:
    """Open the pool inside the window, close it outside (served on a cron schedule)."""
    return apply_window(pool, Window.parse(start, end))


def pool_paused_check():
    """A callable telling whether this flow run's pool is paused now (checked at most every 15 s), or ``None``
    when the run did not come from a farm deployment (a local render has no pool to pause)."""
    from prefect.runtime import flow_run

    pool = next((tag.split(":", 1)[1] for tag in (flow_run.tags or []) if tag.startswith("pool:")), None)
    if pool is None:
        return None
    state = {"checked": 0.0, "paused": False}

    def paused() -> bool:
        if time.monotonic() - state["checked"] >= POOL_CHECK_INTERVAL_S:
            with get_client(sync_client=True) as client:
                state["paused"] = bool(client.read_work_pool(pool).is_paused)
            state["checked"] = time.monotonic()
        return state["paused"]

    return paused
