"""Window planning under the API's range cap, and learning a smaller cap from its 400s (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.errors import BadRequest
from syncer.results import BatchCounts, Window
from syncer.sync import Pass, plan_windows

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def test_windows_are_cut_at_the_size_and_cover_the_range_without_gaps() -> None:
    windows = plan_windows(T0, T0 + 200 * DAY, 30 * DAY)
    assert [w.span for w in windows] == [30 * DAY] * 6 + [20 * DAY]
    assert windows[0].start == T0
    assert windows[-1].end == T0 + 200 * DAY
    assert all(a.end == b.start for a, b in zip(windows, windows[1:], strict=False))


def test_only_the_newest_window_of_a_pass_asks_for_the_apis_now() -> None:
    windows = plan_windows(T0, T0 + 70 * DAY, 30 * DAY, open_end=True)
    assert [w.request_end for w in windows] == [T0 + 30 * DAY, T0 + 60 * DAY, None]
    assert [w.request_end for w in plan_windows(T0, T0 + 9 * DAY, 30 * DAY)] == [T0 + 9 * DAY]
    older, newer = windows[-1].halves()
    assert (older.request_end, newer.request_end) == (older.end, None)
    assert windows[-1].cut(4 * DAY)[-1].open_end
    assert not any(w.open_end for w in windows[-1].cut(4 * DAY)[:-1])


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, CURSOR_API_KEY="k", **values)


@pytest.mark.parametrize("window", ["31d", "60d", "1000d"])
def test_a_window_above_30_days_is_a_config_error_naming_the_variable(window: str) -> None:
    from syncer.config import load_settings
    from syncer.errors import ConfigError

    with pytest.raises(ConfigError, match="^invalid configuration: SYNC_WINDOW: must be at most"):
        load_settings(_env_file=None, SYNC_WINDOW=window)
    assert settings(SYNC_WINDOW="30d").sync_window == 30 * DAY


class RangeCappedPass(Pass):
    """A Pass whose windows are 'read' by a fake API refusing ranges longer than `cap`."""

    cap: timedelta = 7 * DAY
    sent: list[Window]

    async def _window(self, window: Window, advance: bool) -> BatchCounts:
        self.sent.append(window)
        if window.span > self.cap:
            raise BadRequest("HTTP 400: Date range cannot exceed 7 days", status=400)
        return BatchCounts(inserted=1)


def capped_pass(cap: timedelta, api: Any = None) -> RangeCappedPass:
    api = api or SimpleNamespace(window_caps={})
    one = RangeCappedPass(api, None, settings(), Endpoint.COMMITS, "sync")  # type: ignore[arg-type]
    one.cap, one.sent = cap, []
    return one


async def read_all(one: Pass, windows: list[Window]) -> int:
    total = 0
    for window in windows:
        total += (await one._window_or_halves(window, True)).inserted
    return total


async def test_a_400_halves_the_window_and_the_size_is_kept_for_the_process() -> None:
    one = capped_pass(7 * DAY)
    windows = plan_windows(T0, T0 + 200 * DAY, 30 * DAY, open_end=True)
    read = await read_all(one, windows)
    refused = [w for w in one.sent if w.span > 7 * DAY]
    assert [w.span for w in refused] == [30 * DAY, 15 * DAY, 7.5 * DAY]
    assert one.api.window_caps == {Endpoint.COMMITS: 3.75 * DAY}
    accepted = [w for w in one.sent if w.span <= 7 * DAY]
    assert read == len(accepted)
    assert accepted[0].start == T0
    assert accepted[-1].end == T0 + 200 * DAY
    assert all(a.end == b.start for a, b in zip(accepted, accepted[1:], strict=False))
    assert [w.open_end for w in accepted].count(True) == 1
    assert accepted[-1].open_end

    # a later pass of the same process plans with the learned size: no refusal at all
    again = capped_pass(7 * DAY, one.api)
    size = min(30 * DAY, again.api.window_caps[Endpoint.COMMITS])
    await read_all(again, plan_windows(T0, T0 + 30 * DAY, size))
    assert all(w.span <= 7 * DAY for w in again.sent)


async def test_a_400_to_a_one_day_window_is_a_real_error() -> None:
    one = capped_pass(timedelta(hours=12))
    with pytest.raises(BadRequest, match="Date range cannot exceed"):
        await read_all(one, plan_windows(T0, T0 + 4 * DAY, 2 * DAY))
    assert [w.span for w in one.sent] == [2 * DAY, DAY]
    assert one.api.window_caps == {Endpoint.COMMITS: DAY}


async def test_other_4xx_are_not_taken_for_a_range_too_long() -> None:
    class NotFound(RangeCappedPass):
        async def _window(self, window: Window, advance: bool) -> BatchCounts:
            self.sent.append(window)
            raise BadRequest("HTTP 404: no such path", status=404)

    gone = NotFound(SimpleNamespace(window_caps={}), None, settings(), Endpoint.COMMITS, "sync")  # type: ignore[arg-type]
    gone.sent = []
    with pytest.raises(BadRequest, match="404"):
        await read_all(gone, [Window(T0, T0 + 10 * DAY)])
    assert len(gone.sent) == 1
