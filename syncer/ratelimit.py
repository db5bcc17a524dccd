"""The shared request budget: a sliding-window limiter per endpoint, fair and clock-injected.

The API allows `requests` calls per `period` per team and endpoint. Every job in the process
asks the same `RateLimiters` before each HTTP attempt, so the budget holds however many jobs
run. The policy: a log of the last `requests` grant times; a new grant waits until the oldest
one is `period` old, so no window of `period` seconds ever holds more than `requests` grants.
Waiters are served first come, first served (an `asyncio.Lock` is FIFO), and a 429 from the
server pushes the next grant back by its `Retry-After` through `penalize`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


class RequestBudget(Protocol):
    """What the API client asks before every request; keyed by endpoint path."""

    async def acquire(self, key: str) -> float:
        """Wait until a request on `key` is allowed; return the seconds waited."""
        ...

    def penalize(self, key: str, retry_after: float) -> None:
        """Allow no request on `key` for `retry_after` seconds (the server said 429)."""
        ...


class RateLimiter:
    """At most `requests` grants in any window of `period` seconds, FIFO among waiters."""

    def __init__(
        self,
        requests: int,
        period: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if requests < 1 or period <= 0:
            raise ValueError("a rate limit needs requests >= 1 and period > 0")
        self.requests = requests
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._grants: deque[float] = deque(maxlen=requests)
        self._not_before = float("-inf")
        self._turn = asyncio.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter(requests={self.requests}, period={self.period})"

    async def acquire(self) -> float:
        """Wait for the next free slot in the window and take it; return the seconds waited."""
        started = self._clock()
        async with self._turn:
            while (delay := self._delay(self._clock())) > 0:
                await self._sleep(delay)
            self._grants.append(self._clock())
        return self._clock() - started

    def penalize(self, retry_after: float) -> None:
        """Grant nothing for the next `retry_after` seconds."""
        self._not_before = max(self._not_before, self._clock() + max(0.0, retry_after))

    def _delay(self, now: float) -> float:
        """Seconds until a grant at `now` would keep every window within the limit."""
        delay = self._not_before - now
        if len(self._grants) == self.requests:
            delay = max(delay, self._grants[0] + self.period - now)
        return delay


class RateLimiters:
    """One `RateLimiter` per key, created on first use; implements `RequestBudget`."""

    def __init__(
        self,
        requests: int,
        period: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.requests = requests
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._limiters: dict[str, RateLimiter] = {}

    def __repr__(self) -> str:
        return f"RateLimiters(requests={self.requests}, period={self.period})"

    def limiter(self, key: str) -> RateLimiter:
        """The limiter of `key`, created on demand."""
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = RateLimiter(self.requests, self.period, clock=self._clock, sleep=self._sleep)
            self._limiters[key] = limiter
        return limiter

    async def acquire(self, key: str) -> float:
        """Wait until a request on `key` is allowed; return the seconds waited."""
        return await self.limiter(key).acquire()

    def penalize(self, key: str, retry_after: float) -> None:
        """Allow no request on `key` for `retry_after` seconds."""
        self.limiter(key).penalize(retry_after)
