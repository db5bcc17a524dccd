"""The team-wide rate budget: processes sharing a database never exceed the limit together."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from time import monotonic

import pytest

from syncer.budget import PostgresBudget, default_margin, next_slot
from syncer.db import create_engine
from syncer.store import Store

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
        await budget.acquire(key)
        granted.append(monotonic())

    await asyncio.gather(*(request(budgets[i % 2]) for i in range(9)))

    assert len(granted) == 9
    assert_within_limit(granted, 3, 1.0)
    span = max(granted) - min(granted)
    assert span < 2 * 1.3 + 0.5, f"{span:.2f}s"  # booked slots, not polling: no idle time


async def test_a_429_in_one_process_holds_back_the_others(stores: list[Store]) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    first, second = (PostgresBudget(store, 5, 60.0) for store in stores)
    async with first:
        first.penalize(key, 1.0)
    started = monotonic()
    waited = await second.acquire(key)
    assert 0.8 <= waited < 2.0
    assert monotonic() - started >= 0.8


async def test_waiting_processes_hold_no_lock(stores: list[Store]) -> None:
    key = f"/test/{uuid.uuid4().hex}"
    first, second = (PostgresBudget(store, 1, 30.0, margin=0) for store in stores)
    await first.acquire(key)
    latest = "SELECT grants[1] FROM rate_budget WHERE key = $1"
    async with stores[0].raw() as conn:
        granted = await conn.fetchval(latest, key)
        sleeper = asyncio.create_task(second.acquire(key))  # books 30 s ahead, then sleeps
        try:
            for _ in range(100):  # until the booking is committed
                if (booked := await conn.fetchval(latest, key)) != granted:
                    break
                await asyncio.sleep(0.05)
            assert (booked - granted).total_seconds() == pytest.approx(30, abs=0.01)
            locked = await asyncio.wait_for(  # the sleeper holds no lock on the row
                conn.fetchval(latest + " FOR UPDATE", key), 2
            )
            assert locked == booked
        finally:
            sleeper.cancel()


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
            await budget.acquire("/down")
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
