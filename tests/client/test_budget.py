"""The team-wide rate budget: processes sharing a database never exceed the limit together."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from time import monotonic

import pytest

from syncer.client.api import CursorClient
from syncer.client.budget import PostgresBudget, default_margin, next_slot
from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi, FakeApiConfig
from syncer.store.db import create_engine
from syncer.store.store import Store
from tests.csvpath import rows_of

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
MINUTE = timedelta(seconds=60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("grants", "not_before", "now", "expected"),
    [
        ([], None, 0, 0),  # nothing booked: now
        ([at(0), at(1)], None, 2, 2),  # room left in the window: now
        ([at(0), at(1), at(2), at(3), at(4)], None, 5, 60),  # full: when the oldest expires
        ([at(0), at(1), at(2), at(3), at(4)], None, 70, 70),  # full but expired: now
        ([at(10), at(20), at(30), at(40), at(50)], None, 55, 70),  # oldest of the last five
        ([], at(30), 5, 30),  # a 429's Retry-After holds everyone back
        ([at(0), at(1), at(2), at(3), at(4)], at(90), 5, 90),  # the later of the two wins
        ([at(0), at(61), at(62), at(63), at(64), at(65)], None, 66, 121),  # only the last five
    ],
)
def test_next_slot_keeps_every_window_within_the_limit(
    grants: list[datetime], not_before: datetime | None, now: float, expected: float
) -> None:
    assert next_slot(grants, not_before, at(now), 5, MINUTE) == at(expected)


def test_the_margin_grows_with_the_period() -> None:
    assert default_margin(60) == pytest.approx(3.0)
    assert default_margin(1) == pytest.approx(0.25)


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[list[Store]]:
    """Two stores with pools of their own: two syncer processes on one database."""
    async with Store.connect(database_url) as one, Store.connect(database_url) as two:
        yield [one, two]


def assert_within_limit(times: list[float], requests: int, period: float) -> None:
    times = sorted(times)
    gaps = [later - earlier for earlier, later in zip(times, times[requests:], strict=False)]
    assert min(gaps) >= period, f"{requests + 1} grants within {min(gaps):.3f}s"


async def test_two_processes_share_one_budget(stores: list[Store]) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    budgets = [PostgresBudget(store, 3, 1.0, margin=0.3) for store in stores]
    granted: list[float] = []

    async def request(budget: PostgresBudget) -> None:
        budget.settle(await budget.acquire(key))  # answered at once
        granted.append(monotonic())

    await asyncio.gather(*(request(budgets[i % 2]) for i in range(9)))
    for budget in budgets:
        await budget.aclose()

    assert len(granted) == 9
    assert_within_limit(granted, 3, 1.0)
    span = max(granted) - min(granted)
    assert span < 2 * 1.3 + 0.5, f"{span:.2f}s"  # each waits for its slot, no idle time


async def test_a_429_in_one_process_holds_back_the_others(stores: list[Store]) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    first, second = (PostgresBudget(store, 5, 60.0) for store in stores)
    async with first:
        first.penalize(key, 1.0)
    started = monotonic()
    waited = (await second.acquire(key)).waited
    assert 0.8 <= waited < 2.0
    assert monotonic() - started >= 0.8


async def test_waiting_processes_hold_no_lock(stores: list[Store]) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    first, second = (PostgresBudget(store, 1, 30.0, margin=0) for store in stores)
    first.settle(await first.acquire(key))
    await first.aclose()
    sleeper = asyncio.create_task(second.acquire(key))  # must wait 30 s
    try:
        await asyncio.sleep(0.3)
        assert not sleeper.done()
        async with stores[0].raw() as conn:
            grants = await asyncio.wait_for(  # the sleeper holds no lock on the row
                conn.fetchval("SELECT grants FROM rate_budget WHERE key = $1 FOR UPDATE", key), 2
            )
        assert len(grants) == 1, "a waiter books nothing until its turn"
    finally:
        sleeper.cancel()


async def test_a_request_in_flight_holds_the_other_process_back(stores: list[Store]) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    first, second = (PostgresBudget(store, 1, 0.5, margin=0) for store in stores)
    grant = await first.acquire(key)  # sent, not answered yet: the server may count it late
    waiter = asyncio.create_task(second.acquire(key))
    await asyncio.sleep(1.5)  # three periods
    assert not waiter.done(), "an unanswered request keeps its slot"
    first.settle(grant)
    settled = monotonic()
    await first.aclose()
    await waiter
    assert monotonic() - settled >= 0.45, "the period counts from the answer"


async def test_a_crashed_process_holds_its_slot_no_longer_than_a_request_can_take(
    stores: list[Store],
) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    crashed = PostgresBudget(stores[0], 1, 0.2, margin=0, in_flight=1.0)
    await crashed.acquire(key)  # never settled: the process died with it in flight
    survivor = PostgresBudget(stores[1], 1, 0.2, margin=0, in_flight=1.0)
    started = monotonic()
    await survivor.acquire(key)
    assert 1.0 <= monotonic() - started < 3.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_without_the_database_the_process_keeps_its_own_limit() -> None:
    engine = create_engine(f"postgresql://nobody@127.0.0.1:{_closed_port()}/none")
    try:
        budget = PostgresBudget(Store(engine), 2, 0.5, margin=0.25)  # connect times vary
        granted = []
        for _ in range(5):
            budget.settle(await budget.acquire("/down"))
            granted.append(monotonic())
        assert_within_limit(granted, 2, 0.5)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("behind", ["this process", "another process"])
async def test_a_stop_ends_a_wait_for_the_budget_at_once(stores: list[Store], behind: str) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    stop = asyncio.Event()
    first = PostgresBudget(stores[0], 1, 30.0)
    waiter = PostgresBudget(stores[0] if behind == "this process" else stores[1], 1, 30.0,
                            stop=stop)  # fmt: skip
    await (waiter if behind == "this process" else first).acquire(key)
    waiting = asyncio.create_task(waiter.acquire(key))
    await asyncio.sleep(0.3)
    assert not waiting.done()

    stop.set()
    started = monotonic()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert monotonic() - started < 1


async def test_processes_whose_requests_reach_the_server_late_cause_no_429(
    stores: list[Store],
) -> None:
    config = FakeApiConfig(commits=40, changes=40, seed=3, rate_limit_requests=2,
                           rate_limit_period=1.0)  # fmt: skip
    async with FakeApi(config) as sim:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, CURSOR_API_KEY=config.api_key, CURSOR_API_BASE_URL=sim.url,
            CURSOR_RATE_LIMIT_REQUESTS=2, CURSOR_RATE_LIMIT_PERIOD_SECONDS=1.0,
            CURSOR_MAX_RETRIES=0,  # a 429 would fail the test loudly
        )  # fmt: skip
        budgets = [PostgresBudget.from_settings(store, settings) for store in stores]
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
