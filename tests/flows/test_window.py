"""The overnight window: time arithmetic, and pausing/resuming a real work pool on the test Prefect server."""

from __future__ import annotations

import datetime as dt

import pytest

from framefarm.errors import InputError
from framefarm.flows.window import Window, apply_window

pytestmark = pytest.mark.usefixtures("prefect_server")


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, 28, hour, minute, tzinfo=dt.timezone.utc)


def test_a_window_past_midnight():
    window = Window.parse("22:00", "07:00")
    assert [window.contains(at(h)) for h in (21, 22, 23, 0, 6, 7, 12)] == [False, True, True, True, True, False,
                                                                           False]
    assert window.next_opening(at(12)) == at(22)
    assert window.next_opening(at(23)) == at(22) + dt.timedelta(days=1)


def test_a_daytime_window():
    window = Window.parse("09:30", "17:00")
    assert [window.contains(at(h, m)) for h, m in ((9, 29), (9, 30), (16, 59), (17, 0))] == [False, True, True, False]


def test_bad_times_are_input_errors():
    with pytest.raises(InputError, match="window: is not a pair of HH:MM times"):
        Window.parse("10pm", "07:00")


def test_apply_window_pauses_and_resumes_the_pool():
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="night-pool", type="process"), overwrite=True)
    window = Window.parse("22:00", "07:00")
    assert apply_window("night-pool", window, now=at(12)) is False
    with get_client(sync_client=True) as client:
        assert client.read_work_pool("night-pool").is_paused is True
    assert apply_window("night-pool", window, now=at(23)) is True
    with get_client(sync_client=True) as client:
        assert client.read_work_pool("night-pool").is_paused is False
