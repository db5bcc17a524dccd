"""A clock for budget tests that moves only when every task waits on it, never on the real one.

The database stays real: `table()` gives a `rate_budget` table stamped with this clock, and
time does not move while one of its calls is in flight.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from syncer.store.ratebudget import Decide, RateBudgetTable
from syncer.store.store import Store

T = TypeVar("T")
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class VirtualTime:
    """`clock`, `wall` and `sleep` for the code under test; `run` drives them."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._busy = 0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), len(self.sleeps), wake))
        await wake

    @property
    def sleeping(self) -> int:
        """How many tasks sleep on this clock now."""
        return sum(1 for *_, wake in self._sleepers if not wake.done())

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Real work in flight: time stands still until it is done."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    def table(self, store: Store) -> RateBudgetTable:
        """The rate_budget table of `store`, stamped with this clock."""
        return _Table(store, self)

    async def quiet(self) -> None:
        """Return once nothing can run until a sleeper wakes."""
        while True:
            for _ in range(50):
                await asyncio.sleep(0)
            if not self._busy:
                return
            await asyncio.sleep(0.002)  # the database is answering

    async def step(self) -> bool:
        """Once every task waits, move to the next deadline and wake it; False if none."""
        await self.quiet()
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled
        if not self._sleepers:
            return False
        deadline, _, wake = heapq.heappop(self._sleepers)
        self.now = max(self.now, deadline)
        wake.set_result(None)
        return True

    async def run(self, work: Awaitable[T]) -> T:
        """Await `work`, moving time whenever everything waits on it."""
        task = asyncio.ensure_future(work)
        while not task.done():
            if not await self.step():
                await asyncio.sleep(0.001)  # waiting on something else (a hang meets the timeout)
        return await task

    async def advance(self, seconds: float) -> None:
        """Let `seconds` pass, waking every sleeper due on the way."""
        end = self.now + seconds
        while True:
            await self.quiet()
            due = [d for d, _, wake in self._sleepers if not wake.done() and d <= end]
            if not due:
                break
            await self.step()
        self.now = end

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait (without moving time) until `condition` holds."""
        while not condition():
            await self.quiet()
            await asyncio.sleep(0.001)


class _Table(RateBudgetTable):
    def __init__(self, store: Store, time: VirtualTime) -> None:
        super().__init__(store, clock=time.wall)
        self._time = time

    async def book(self, key: str, decide: Decide[T]) -> T:
        with self._time.busy():
            return await super().book(key, decide)

    async def settle(self, key: str, booking: datetime) -> None:
        with self._time.busy():
            await super().settle(key, booking)

    async def penalize(self, key: str, seconds: float) -> None:
        with self._time.busy():
            await super().penalize(key, seconds)
