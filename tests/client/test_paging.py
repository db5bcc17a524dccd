"""The JSON pages: the API's count for a window, short reads, and the 429 slot (no Retry-After)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from syncer.client.api import CursorClient
from syncer.client.paging import count, read_json_window
from syncer.endpoints import Endpoint
from syncer.errors import DataError, RateLimited
from syncer.fakeapi import FakeApi, FakeApiConfig
from syncer.parse.pages import Page
from syncer.parse.rows import Rejected
from tests.support import client_settings

UTC = timezone.utc
ANCHOR = datetime(2025, 8, 1, tzinfo=UTC)
T0 = datetime(2025, 7, 1, tzinfo=UTC)


@pytest.mark.parametrize("amend_rate", [0.0, 0.3])
async def test_count_is_the_simulators_truth_with_inclusive_boundaries(amend_rate: float) -> None:
    config = FakeApiConfig(commits=300, changes=200, seed=5, anchor=ANCHOR, amend_rate=amend_rate)
    async with FakeApi(config) as sim, CursorClient(client_settings(sim.url)) as api:
        for endpoint in Endpoint:
            rows = sim.dataset.truth(endpoint, ANCHOR - timedelta(days=30), ANCHOR)
            first, last = rows[10]["created_at"], rows[-10]["created_at"]
            inside = [r for r in rows if first <= r["created_at"] <= last]
            counted = await count(api, endpoint, first, last)
            if amend_rate == 0:
                assert counted == len(inside)  # both boundary rows counted
            else:  # an amended row's older copy is served, and counted, too
                served = [
                    item
                    async for page in read_json_window(api, endpoint, first, last, 1000)
                    for item in page
                ]
                assert counted == len(served) > len(inside)
                keys = {item[0] for item in served if not isinstance(item, Rejected)}
                assert keys == {r[endpoint.key] for r in inside}


def page(rows: list[Any], total: int, number: int, size: int) -> Page:
    return Page(rows=rows, total_count=total, page=number, page_size=size)


def row(key: str) -> tuple[Any, ...]:
    values: list[Any] = [None] * (len(Endpoint.COMMITS.columns) + 1)
    values[0], values[16] = key, T0
    return tuple(values)


class ShortPages:
    """A stand-in client whose pages hold fewer rows than its `totalCount` says, `short` times."""

    def __init__(self, short: int) -> None:
        self.short = short
        self.page_sizes: dict[Endpoint, int] = {}
        self.requests = 0

    async def fetch_page(self, endpoint: Endpoint, start: datetime, end: datetime, *,
                         page: int, page_size: int) -> Page:  # fmt: skip
        self.requests += 1
        keys = ["a", "b", "c"] if page == 1 else ["d", "e", "f"]
        if page == 2 and self.short > 0:
            self.short -= 1
            keys = ["c", "d", "e"]  # a row moved between pages: "c" again, "f" never
        return page_(keys, page, page_size)


def page_(keys: list[str], number: int, size: int) -> Page:
    return page([row(k) for k in keys], 6, number, size)


async def test_a_short_read_is_read_again_once() -> None:
    api = ShortPages(short=1)
    read = [r async for rows in read_json_window(api, Endpoint.COMMITS, T0, T0, 3) for r in rows]  # type: ignore[arg-type]
    assert {r[0] for r in read if not isinstance(r, Rejected)} == set("abcdef")
    assert api.requests == 4


async def test_a_window_short_twice_fails_loudly() -> None:
    api = ShortPages(short=2)
    with pytest.raises(DataError, match="counted 6 rows .* held 5, twice"):
        async for _ in read_json_window(api, Endpoint.COMMITS, T0, T0, 3):  # type: ignore[arg-type]
            pass


async def test_rejected_items_count_as_read() -> None:
    bad = Rejected('{"commitHash": 1}', "commit_hash: unexpected", 3)

    async def fetch_page(*_: Any, page: int, page_size: int) -> Page:
        return Page(rows=[row("a"), row("b"), bad], total_count=3, page=page, page_size=3)

    api = SimpleNamespace(page_sizes={}, fetch_page=fetch_page)
    pages = [rows async for rows in read_json_window(api, Endpoint.COMMITS, T0, T0, 3)]  # type: ignore[arg-type]
    assert pages == [[row("a"), row("b"), bad]]


@pytest.mark.parametrize("seed", range(5))
def test_a_429_without_retry_after_waits_at_least_a_slot_with_jitter(seed: int) -> None:
    settings = client_settings("http://api.test", CURSOR_RATE_LIMIT_REQUESTS=5,
                            CURSOR_RATE_LIMIT_PERIOD_SECONDS=60)  # fmt: skip
    api = CursorClient(settings, rng=random.Random(seed))
    waits = [api._delay(attempt, RateLimited("429", status=429)) for attempt in (1, 1, 1, 4)]
    assert all(wait >= 12.0 for wait in waits), waits  # 60 s ÷ 5 requests
    assert len(set(waits)) == len(waits), "jittered, so processes do not retry in step"
    assert api._delay(1, RateLimited("429", status=429, retry_after=3.0)) == 3.0


async def test_requests_ask_caches_not_to_answer() -> None:
    """Answers carry `Cache-Control: public, max-age=900`; a cache must not answer for them."""
    async with CursorClient(client_settings("http://api.test")) as api:
        assert api._session is not None
        assert api._session.headers["Cache-Control"] == "no-cache"
