"""The shared limiter keeps every window within budget, serves waiters in order, never sleeps."""

from __future__ import annotations

import asyncio

import pytest

from syncer.client.ratelimit import RateLimiter, RateLimiters


class FakeTime:
    """A clock that only moves when someone sleeps on it; records every sleep requested."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def take(limiter: RateLimiter) -> float:
    """One request answered at once: acquire, settle; the seconds waited."""
    grant = await limiter.acquire()
    limiter.settle(grant)
    return grant.waited


async def take_key(budget: RateLimiters, key: str) -> float:
    grant = await budget.acquire(key)
    budget.settle(grant)
    return grant.waited


def max_in_any_window(stamps: list[float], period: float) -> int:
    """The largest number of stamps inside any half-open window [t, t + period)."""
    ordered = sorted(stamps)
    return max(sum(1 for other in ordered if start <= other < start + period) for start in ordered)


@pytest.mark.parametrize(("requests", "period"), [(5, 60.0), (3, 1.0), (1, 0.5)])
async def test_burst_of_20_never_exceeds_the_window(requests: int, period: float) -> None:
    fake = FakeTime()
    limiter = RateLimiter(requests, period, clock=fake.clock, sleep=fake.sleep)
    granted: list[tuple[int, float]] = []

    async def worker(index: int) -> None:
        await take(limiter)
        granted.append((index, fake.clock()))

    await asyncio.gather(*(worker(i) for i in range(20)))

    stamps = [at for _, at in granted]
    assert max_in_any_window(stamps, period) == requests
    assert [index for index, _ in granted] == list(range(20)), "served in arrival order"
    # 20 grants need ceil(20 / requests) windows: the last one opens after that many periods.
    assert fake.now == pytest.approx(((20 - 1) // requests) * period)


async def test_acquire_returns_seconds_waited() -> None:
    fake = FakeTime()
    limiter = RateLimiter(2, 10.0, clock=fake.clock, sleep=fake.sleep)
    assert await take(limiter) == 0
    fake.now = 3.0
    assert await take(limiter) == 0
    assert await take(limiter) == pytest.approx(7.0)
    assert fake.sleeps == [pytest.approx(7.0)]


async def test_penalize_pushes_the_next_grant() -> None:
    fake = FakeTime()
    limiter = RateLimiter(5, 60.0, clock=fake.clock, sleep=fake.sleep)
    await take(limiter)
    limiter.penalize(30.0)
    assert await take(limiter) == pytest.approx(30.0)
    limiter.penalize(-5)  # a nonsense hint never moves time backwards
    assert await take(limiter) == 0


async def test_penalty_never_shortens_an_earlier_longer_one() -> None:
    fake = FakeTime()
    limiter = RateLimiter(5, 60.0, clock=fake.clock, sleep=fake.sleep)
    limiter.penalize(20.0)
    limiter.penalize(5.0)
    assert await take(limiter) == pytest.approx(20.0)


async def test_cancelled_waiter_frees_its_turn() -> None:
    fake = FakeTime()
    blocked = asyncio.Event()

    async def stuck_sleep(seconds: float) -> None:
        blocked.set()
        await asyncio.Event().wait()

    limiter = RateLimiter(1, 60.0, clock=fake.clock, sleep=stuck_sleep)
    await take(limiter)
    waiter = asyncio.create_task(limiter.acquire())
    await blocked.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    fake.now = 60.0
    assert await take(limiter) == 0


async def test_limiters_are_per_key_and_shared() -> None:
    fake = FakeTime()
    budget = RateLimiters(1, 60.0, clock=fake.clock, sleep=fake.sleep)
    assert await take_key(budget, "/commits.csv") == 0
    assert await take_key(budget, "/changes.csv") == 0, "another endpoint has its own budget"
    assert await take_key(budget, "/commits.csv") == pytest.approx(60.0)
    budget.penalize("/changes.csv", 90.0)
    assert await take_key(budget, "/changes.csv") == pytest.approx(90.0)


async def test_a_request_not_yet_answered_holds_its_slot() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1, 10.0, clock=fake.clock, sleep=fake.sleep)
    first = await limiter.acquire()  # sent; the server may count it any moment
    waiter = asyncio.create_task(take(limiter))
    for _ in range(100):
        await asyncio.sleep(0)
    fake.now = 30.0  # far past the period: still no answer
    for _ in range(100):
        await asyncio.sleep(0)
    assert not waiter.done()
    assert fake.sleeps == [], "it waits for the answer, not on the clock"
    limiter.settle(first)  # the answer begins: the server counted it by now
    assert await waiter == pytest.approx(30.0 + 10.0)
    assert fake.sleeps == [pytest.approx(10.0)]


async def test_an_unanswered_request_and_a_penalty_each_hold_for_their_own_time() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1, 10.0, clock=fake.clock, sleep=fake.sleep)
    first = await limiter.acquire()
    limiter.penalize(100.0)
    waiter = asyncio.create_task(take(limiter))
    for _ in range(100):
        await asyncio.sleep(0)
    assert not waiter.done()
    assert fake.sleeps == [], "it waits for the answer first, not on the clock"
    fake.now = 30.0
    limiter.settle(first)  # a period from the answer ends at 40; the penalty holds until 100
    assert await waiter == pytest.approx(100.0)
    assert fake.sleeps == [pytest.approx(70.0)]


async def test_a_late_answer_counts_from_when_it_came() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1, 10.0, clock=fake.clock, sleep=fake.sleep)
    first = await limiter.acquire()
    fake.now = 4.0  # the request was slow to reach the server
    limiter.settle(first)
    limiter.settle(first)  # settling twice changes nothing
    assert await take(limiter) == pytest.approx(10.0)
    assert fake.now == pytest.approx(14.0)


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="requests >= 1"):
        RateLimiter(0, 60.0)
