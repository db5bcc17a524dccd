"""The in-process request budget: a sliding-window limiter per endpoint, fair and clock-injected.

Every job in the process asks the same `RateLimiters` before each HTTP attempt, so the budget
holds however many jobs run. The rule (the window, pending and settled grants, the margin) is
`syncer.client.ratewindow`'s; this module keeps the log of recent grants and the waiting.
Waiters are served first come, first served (an `asyncio.Lock` is FIFO), a 429 from the server
pushes the next grant back by its `Retry-After` through `penalize`, and a waiter held back by a
request in flight waits for that request's answer, not on the clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from syncer.client.ratewindow import Wait, counted_at, next_wait, still_counts, widened
from syncer.config import Settings

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


class Grant:
    """A request let through a budget; `settle` it once the server has surely counted it."""

    __slots__ = ("at", "booking", "key", "settled", "waited")

    def __init__(self, key: str, at: float, waited: float) -> None:
        self.key = key
        self.at = at  #: when it was let go, then when it was settled (the limiter's clock)
        self.waited = waited  #: seconds the caller waited for it
        self.settled = False
        self.booking: object = None  #: a shared budget's own handle on it

    def __repr__(self) -> str:
        state = "settled" if self.settled else "in flight"
        return f"Grant({self.key!r}, waited={self.waited:.3f}, {state})"


class RequestBudget(Protocol):
    """What the API client asks before every request; keyed by endpoint path."""

    async def acquire(self, key: str) -> Grant:
        """Wait until a request on `key` is allowed, and take the slot."""
        ...

    def settle(self, grant: Grant) -> None:
        """The server has counted the request (it answered, or the attempt failed)."""
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
        key: str = "",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if requests < 1 or period <= 0:
            raise ValueError("a rate limit needs requests >= 1 and period > 0")
        self.requests = requests
        self.period = period
        self.key = key
        self._clock = clock
        self._sleep = sleep
        self._grants: deque[Grant] = deque()
        self._not_before = float("-inf")
        self._turn = asyncio.Lock()
        self._settled = asyncio.Event()

    def __repr__(self) -> str:
        return f"RateLimiter(requests={self.requests}, period={self.period})"

    async def acquire(self) -> Grant:
        """Wait for the next free slot in the window and take it."""
        started = self._clock()
        async with self._turn:
            while True:
                wait = self._wait(self._clock())
                if wait.seconds <= 0:
                    break
                if wait.on_answer:
                    self._settled.clear()  # set by the next settle
                    await self._settled.wait()
                else:
                    await self._sleep(wait.seconds)
            now = self._clock()
            grant = Grant(self.key, now, now - started)
            self._grants.append(grant)
        return grant

    def settle(self, grant: Grant) -> None:
        """The server has counted `grant`: it now counts from this instant (idempotent)."""
        if not grant.settled:
            grant.at = max(grant.at, self._clock())
            grant.settled = True
            self._settled.set()

    def penalize(self, retry_after: float) -> None:
        """Grant nothing for the next `retry_after` seconds."""
        self._not_before = max(self._not_before, self._clock() + max(0.0, retry_after))

    def _wait(self, now: float) -> Wait:
        """The wait before a grant at `now` fits the window (see `ratewindow.next_wait`)."""
        while self._grants:
            oldest = self._grants[0]
            if still_counts(counted_at(oldest.at, oldest.settled, now), now, self.period):
                break
            self._grants.popleft()  # too old to hold anything back
        grants = ((g.at, g.settled) for g in self._grants)
        return next_wait(grants, self._not_before, now, self.requests, self.period)


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

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiters:
        """The configured rate limit, its window widened by the margin (see `ratewindow`)."""
        requests, period = settings.rate_limit
        return cls(requests, widened(period))

    def __repr__(self) -> str:
        return f"RateLimiters(requests={self.requests}, period={self.period})"

    def limiter(self, key: str) -> RateLimiter:
        """The limiter of `key`, created on demand."""
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = RateLimiter(
                self.requests, self.period, key=key, clock=self._clock, sleep=self._sleep
            )
            self._limiters[key] = limiter
        return limiter

    async def acquire(self, key: str) -> Grant:
        """Wait until a request on `key` is allowed, and take the slot."""
        return await self.limiter(key).acquire()

    def settle(self, grant: Grant) -> None:
        """The server has counted `grant`'s request."""
        self.limiter(grant.key).settle(grant)

    def penalize(self, key: str, retry_after: float) -> None:
        """Allow no request on `key` for `retry_after` seconds."""
        self.limiter(key).penalize(retry_after)
