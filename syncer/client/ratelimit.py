"""The shared request budget: a sliding-window limiter per endpoint, fair and clock-injected.

The API allows `requests` calls per `period` per team and endpoint. Every job in the process
asks the same `RateLimiters` before each HTTP attempt, so the budget holds however many jobs
run. The policy: a log of the recent grants; a new grant waits until the `requests`-th latest
one is `period` old, so no window of `period` seconds ever holds more than `requests` grants.
Waiters are served first come, first served (an `asyncio.Lock` is FIFO), and a 429 from the
server pushes the next grant back by its `Retry-After` through `penalize`.

The server counts a request when it arrives, the limiter when it lets it go, and the two can
drift apart by any amount: a slow connect, a busy event loop on either side. So a grant is
*settled* once the client knows the server has counted it (its response began, or the attempt
failed), and its time moves to that instant. Until then it counts as "now", since the server
may count it at any moment, and a waiter it holds back sleeps until it is settled. A grant's
recorded time is thus never earlier than its arrival, and a request let go `period` after it
can never share the server's window with it, whatever the delays were.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


def settle_poll(period: float) -> float:
    """How often a waiter in another process looks again while a request is in flight."""
    return min(1.0, max(0.05, period / 20))


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
                delay, in_flight = self._wait(self._clock())
                if delay <= 0:
                    break
                if in_flight:
                    self._settled.clear()  # woken by the settle (within a period at most)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._settled.wait(), delay)
                else:
                    await self._sleep(delay)
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

    def _wait(self, now: float) -> tuple[float, bool]:
        """Seconds before a grant at `now` keeps every window within the limit, and whether an
        unsettled grant (counted as "now") is what holds it back.

        In that case the delay is a whole period that moves with the clock: only the settle
        can fix it, so the waiter waits for that rather than on the clock.
        """
        while self._grants and self._grants[0].settled and self._grants[0].at <= now - self.period:
            self._grants.popleft()  # too old to hold anything back
        delay, in_flight = self._not_before - now, False
        if len(self._grants) >= self.requests:
            counted = sorted(g.at if g.settled else max(g.at, now) for g in self._grants)
            binding = counted[-self.requests]
            delay = max(delay, binding + self.period - now)
            unsettled = any(not g.settled for g in self._grants)
            in_flight = unsettled and binding >= now and self._not_before <= now
        return delay, in_flight


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
