"""The team-wide rate budget: processes sharing a database never exceed the limit together.

The database is real; time is virtual (`VirtualTime`) except in the last test, which proves
zero 429s against the simulator on the real clock.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest

from syncer.client.api import CursorClient
from syncer.client.budget import PostgresBudget
from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.errors import Interrupted
from syncer.fakeapi import FakeApi, FakeApiConfig
from syncer.store.db import create_engine
from syncer.store.ratebudget import RateBudgetTable
from syncer.store.store import Store
from tests.csvpath import rows_of

from .virtualtime import VirtualTime


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[list[Store]]:
    """Two stores with pools of their own: two syncer processes on one database."""
    async with Store.connect(database_url) as one, Store.connect(database_url) as two:
        yield [one, two]


def budget(
    time: VirtualTime, store: Store, requests: int, period: float, **options: Any
) -> PostgresBudget:
    """A budget on `store`'s rate_budget table, living on virtual time."""
    table = time.table(store)
    return PostgresBudget(table, requests, period, clock=time.clock, sleep=time.sleep, **options)


def assert_within_limit(times: list[float], requests: int, period: float) -> None:
    times = sorted(times)
    gaps = [later - earlier for earlier, later in zip(times, times[requests:], strict=False)]
    closest = round(min(gaps), 6)  # virtual times are sums of floats: compare microseconds
    assert closest >= period, f"{requests + 1} grants within {closest:.6f}s"


async def test_two_processes_share_one_budget(stores: list[Store]) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    time = VirtualTime()
    budgets = [budget(time, store, 3, 1.0, margin=0.3) for store in stores]
    granted: list[float] = []

    async def request(budget: PostgresBudget) -> None:
        budget.settle(await budget.acquire(key))  # answered at once
        granted.append(time.now)

    await time.run(asyncio.gather(*(request(budgets[i % 2]) for i in range(9))))
    for each in budgets:
        await each.aclose()

    assert len(granted) == 9
    assert_within_limit(granted, 3, 1.3)
    span = max(granted) - min(granted)
    assert span == pytest.approx(2 * 1.3, abs=1e-3)  # each waits for its slot, no idle time


async def test_a_429_in_one_process_holds_back_the_others(stores: list[Store]) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    time = VirtualTime()
    first, second = (budget(time, store, 5, 60.0) for store in stores)
    async with first:
        first.penalize(key, 1.0)
    waited = (await time.run(second.acquire(key))).waited
    assert waited == pytest.approx(1.0)
    assert time.now == pytest.approx(1.0)


async def test_waiting_processes_hold_no_lock(stores: list[Store]) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    time = VirtualTime()
    first, second = (budget(time, store, 1, 30.0, margin=0) for store in stores)
    first.settle(await first.acquire(key))
    await first.aclose()
    sleeper = asyncio.create_task(second.acquire(key))  # must wait 30 s
    try:
        await time.until(lambda: time.sleeping == 1)
        assert not sleeper.done()
        async with stores[0].raw() as conn:
            grants = await asyncio.wait_for(  # the sleeper holds no lock on the row
                conn.fetchval("SELECT grants FROM rate_budget WHERE key = $1 FOR UPDATE", key), 2
            )
        assert len(grants) == 1, "a waiter books nothing until its turn"
        assert time.sleeps == [30.0]
    finally:
        sleeper.cancel()


async def test_a_request_in_flight_holds_the_other_process_back(stores: list[Store]) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    time = VirtualTime()
    first, second = (budget(time, store, 1, 0.5, margin=0) for store in stores)
    grant = await first.acquire(key)  # sent, not answered yet: the server may count it late
    waiter = asyncio.create_task(second.acquire(key))
    await time.advance(1.5)  # three periods
    assert not waiter.done(), "an unanswered request keeps its slot"
    assert len(time.sleeps) >= 3, "the waiter looked again while it waited"
    first.settle(grant)
    await first.aclose()
    await time.run(waiter)
    assert time.now == pytest.approx(1.5 + 0.5), "the period counts from the answer"


async def test_a_crashed_process_holds_its_slot_no_longer_than_a_request_can_take(
    stores: list[Store],
) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    time = VirtualTime()
    crashed = budget(time, stores[0], 1, 0.2, margin=0, in_flight=1.0)
    await crashed.acquire(key)  # never settled: the process died with it in flight
    survivor = budget(time, stores[1], 1, 0.2, margin=0, in_flight=1.0)
    waited = (await time.run(survivor.acquire(key))).waited
    assert waited == pytest.approx(1.0 + 0.2, abs=1e-3)  # counted at its bound, then a period


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_without_the_database_the_process_keeps_its_own_limit() -> None:
    engine = create_engine(f"postgresql://nobody@127.0.0.1:{_closed_port()}/none")
    time = VirtualTime()
    try:
        alone = budget(time, Store(engine), 2, 0.5, margin=0.25)
        granted = []

        async def five() -> None:
            for _ in range(5):
                alone.settle(await alone.acquire("/down"))
                granted.append(time.now)

        await time.run(five())
        assert_within_limit(granted, 2, 0.75)
        assert granted[-1] == pytest.approx(2 * 0.75)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("behind", ["this process", "another process"])
async def test_a_stop_ends_a_wait_for_the_budget_at_once(stores: list[Store], behind: str) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    time = VirtualTime()
    stop = asyncio.Event()
    first = budget(time, stores[0], 1, 30.0)
    waiter = budget(time, stores[0] if behind == "this process" else stores[1], 1, 30.0,
                    stop=stop)  # fmt: skip
    await (waiter if behind == "this process" else first).acquire(key)
    waiting = asyncio.create_task(waiter.acquire(key))
    await time.quiet()  # it waits: for the answer here, on the clock for another process's
    assert not waiting.done()

    stop.set()
    with pytest.raises(Interrupted, match="not sent"):
        await waiting
    assert time.now == 0, "it ended without waiting out the budget"
    async with stores[0].raw() as conn:
        grants = await conn.fetchval("SELECT grants FROM rate_budget WHERE key = $1", key)
    assert len(grants) == 1, "the stopped request booked nothing"


async def test_a_real_cancellation_of_a_wait_is_a_cancellation(stores: list[Store]) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    time = VirtualTime()
    waiter = budget(time, stores[0], 1, 30.0, stop=asyncio.Event())
    await waiter.acquire(key)
    waiting = asyncio.create_task(waiter.acquire(key))
    await time.quiet()
    assert not waiting.done()

    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()


@pytest.mark.slow
async def test_processes_whose_requests_reach_the_server_late_cause_no_429(
    stores: list[Store],
) -> None:
    config = FakeApiConfig(commits=40, changes=40, seed=3, rate_limit_requests=2,
                           rate_limit_period=1.0)  # fmt: skip
    async with FakeApi(config) as sim:
        settings = Settings(
            _env_file=None, CURSOR_API_KEY=config.api_key, CURSOR_API_BASE_URL=sim.url,
            CURSOR_RATE_LIMIT_REQUESTS=2, CURSOR_RATE_LIMIT_PERIOD_SECONDS=1.0,
            CURSOR_MAX_RETRIES=0,  # a 429 would fail the test loudly
        )  # fmt: skip
        budgets = [PostgresBudget.from_settings(RateBudgetTable(s), settings) for s in stores]
        sim.faults.delay_next(0.8)  # the first request is counted 0.8 s after it left
        async with (
            CursorClient(settings, budget=budgets[0]) as one,
            CursorClient(settings, budget=budgets[1]) as two,
        ):
            start, end = datetime(2000, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc)

            async def rows(api: CursorClient) -> int:
                blocks = api.stream_blocks(Endpoint.COMMITS, start, end)
                return len(await rows_of(Endpoint.COMMITS, blocks))

            counts = await asyncio.gather(*(rows((one, two)[i % 2]) for i in range(6)))
        for budget in budgets:
            await budget.aclose()
        assert set(counts) == {40}
        assert sim.stats.rate_limited == 0
