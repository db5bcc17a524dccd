"""The team-wide request budget: grants booked in PostgreSQL, the in-process limiter in front.

Cursor allows 5 requests per minute per team and endpoint, not per process: the daemon and a
`syncer backfill` started beside it must share one budget or they collide into 429s. Every
process of a team writes into the same database, so that is where the budget lives.

The policy. Before each request a process books it in the endpoint's row of `rate_budget`
(`syncer.store.ratebudget`: one short transaction under the row lock, by the database's
clock). The rule is `syncer.client.ratewindow`'s, the same as the in-process limiter's: one
more grant must keep every window of the widened period within the limit and be past a 429's
`Retry-After`; a grant is booked *pending* and settled once its answer began or the attempt
failed. Here the timestamps are converted to seconds from the database's `now`, and a pending
grant counts as "now" for at most the client's connect and read timeouts, after which a crashed
process's grant no longer holds anyone back. A process that may not book yet commits nothing
and sleeps (looking again every `settle_poll` while another process's request is in flight).

The in-process `RateLimiters` is the fast path: jobs of one process queue there first, so only
requests that may go soon touch the database. When PostgreSQL cannot be reached, that limiter
alone keeps this process within the limit (logged once), and booking resumes when it is back.
Every process of a team must use the same CURSOR_RATE_LIMIT_* settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, TypeVar

import structlog

from syncer.client import ratewindow
from syncer.client.ratelimit import Clock, Grant, RateLimiters, Sleep
from syncer.client.ratewindow import counted_at, next_wait, settle_poll, still_counts
from syncer.config import Settings
from syncer.errors import DatabaseError, Interrupted

log = structlog.get_logger(__name__)

T = TypeVar("T")

_TICK = timedelta(microseconds=1)

#: What a booking writes back: the grants still worth keeping, and which of them are pending.
Booking = tuple[list[datetime], list[datetime]]


class Row(Protocol):
    """A key's row of the shared budget, read under its lock (`store.ratebudget.BudgetRow`)."""

    @property
    def grants(self) -> Sequence[datetime]: ...
    @property
    def pending(self) -> frozenset[datetime]: ...
    @property
    def not_before(self) -> datetime | None: ...
    @property
    def now(self) -> datetime: ...


class Ledger(Protocol):
    """Where the team's bookings live (`syncer.store.ratebudget.RateBudgetTable`)."""

    async def book(self, key: str, decide: Callable[[Row], tuple[Booking | None, T]]) -> T:
        """Lock `key`'s row, let `decide` look at it, write the booking it returns."""
        ...

    async def settle(self, key: str, booking: datetime) -> None:
        """The request booked at `booking` was counted by the server."""
        ...

    async def penalize(self, key: str, seconds: float) -> None:
        """No grant on `key` for `seconds`, for every process."""
        ...


def _whole_microseconds(seconds: float) -> float:
    """`seconds` rounded up to the database clock's resolution (a shorter wait changes nothing)."""
    return math.ceil(seconds * 1e6) / 1e6


def _seconds_from(now: datetime) -> Callable[[datetime], float]:
    """Convert the database's timestamps to the rule's seconds, `now` being 0."""
    return lambda moment: (moment - now).total_seconds()


class PostgresBudget:
    """A `RequestBudget` shared by every syncer process writing to the same database."""

    def __init__(
        self,
        ledger: Ledger,
        requests: int,
        period: float,
        *,
        margin: float | None = None,
        in_flight: float = 135.0,
        timeout: float = 5.0,
        stop: asyncio.Event | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.requests = requests
        self.period = period + (ratewindow.margin(period) if margin is None else margin)
        self._in_flight = in_flight
        self._ledger = ledger
        self._timeout = timeout
        self._stop = stop
        self._clock = clock
        self._sleep = sleep
        self._local = RateLimiters(requests, self.period, clock=clock, sleep=sleep)
        self._tasks: set[asyncio.Task[None]] = set()
        self._degraded = False

    @classmethod
    def from_settings(
        cls, ledger: Ledger, settings: Settings, *, stop: asyncio.Event | None = None
    ) -> PostgresBudget:
        """The budget for the configured rate limit; `stop` abandons waits (see `acquire`).

        A request in flight has had its answer, or failed, within the connect and read
        timeouts: that bounds how long a pending grant holds others back.
        """
        requests, period = settings.rate_limit
        in_flight = settings.cursor_connect_timeout + settings.cursor_read_timeout
        return cls(ledger, requests, period, in_flight=in_flight.total_seconds(), stop=stop)

    def __repr__(self) -> str:
        return f"PostgresBudget(requests={self.requests}, period={self.period:g})"

    async def __aenter__(self) -> PostgresBudget:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Let settlements and penalties reach the database (bounded by the timeout)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._timeout)

    async def acquire(self, key: str) -> Grant:
        """Wait until a request on `key` fits the team's budget, and book it.

        Once the `stop` event is set, waiting ends at once with `Interrupted`: nothing was
        sent yet, so a shutdown need not sit out a minute of budget.
        """
        started = self._clock()
        grant = await self._unless_stopped(self._local.acquire(key))
        try:
            while True:
                booking, wait = await self._book(key)
                if booking is not None or wait <= 0:
                    break
                await self._unless_stopped(self._sleep(wait))
        except BaseException:
            self._local.settle(grant)  # never sent: it holds this process back no longer
            raise
        grant.booking = booking
        grant.waited = self._clock() - started
        return grant

    def settle(self, grant: Grant) -> None:
        """The server has counted `grant`'s request: record when, here and for the team."""
        self._local.settle(grant)
        booking, grant.booking = grant.booking, None
        if isinstance(booking, datetime):
            self._spawn(self._write(self._ledger.settle(grant.key, booking), grant.key,
                                    what="settlement"))  # fmt: skip

    def penalize(self, key: str, retry_after: float) -> None:
        """Hold back every process's requests on `key` for `retry_after` seconds (a 429)."""
        self._local.penalize(key, retry_after)
        self._spawn(self._write(self._ledger.penalize(key, retry_after), key, what="penalty"))

    async def _unless_stopped(self, waiting: Awaitable[T]) -> T:
        if self._stop is None:
            return await waiting
        wait = asyncio.ensure_future(waiting)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({wait, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not wait.done():
                wait.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await wait
        if wait.cancelled():
            raise Interrupted("stopping: the request was not sent")
        return wait.result()

    def _spawn(self, write: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(write)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _book(self, key: str) -> tuple[datetime | None, float]:
        """Book a grant of `key` now (its booking, 0), or say how long to wait (None, seconds).

        Without the database it returns (None, 0): the local limiter alone decides.
        """
        try:
            booked = await asyncio.wait_for(self._ledger.book(key, self._decide), self._timeout)
        except (DatabaseError, TimeoutError) as exc:
            if not self._degraded:
                log.warning(
                    "rate_budget_local_only",
                    key=key,
                    error=str(exc) or type(exc).__name__,
                    hint="PostgreSQL is unreachable: this process keeps its own limit, but "
                    "other syncer processes of the team may now collide into 429s",
                )
            self._degraded = True
            return None, 0.0
        if self._degraded:
            log.info("rate_budget_shared_again", key=key)
            self._degraded = False
        return booked

    def _decide(self, row: Row) -> tuple[Booking | None, tuple[datetime | None, float]]:
        """Under the row lock: book a grant now, or say how long to wait (the rule's terms)."""
        seconds = _seconds_from(row.now)
        grants = [(seconds(g), g not in row.pending) for g in row.grants]
        not_before = -math.inf if row.not_before is None else seconds(row.not_before)
        wait = next_wait(grants, not_before, 0.0, self.requests, self.period, self._in_flight)
        if wait.seconds > 0:
            poll = settle_poll(self.period) if wait.on_answer else wait.seconds
            return None, (None, _whole_microseconds(min(wait.seconds, poll)))
        counted = [counted_at(at, settled, 0.0, self._in_flight) for at, settled in grants]
        kept = sorted(g for g, at in zip(row.grants, counted, strict=True)
                      if still_counts(at, 0.0, self.period))  # fmt: skip
        booking = max([row.now, *(g + _TICK for g in row.grants)])  # unique: settled by value
        pending = [g for g in kept if g in row.pending]
        return ([*kept, booking], [*pending, booking]), (booking, 0.0)

    async def _write(self, write: Awaitable[None], key: str, *, what: str) -> None:
        try:
            await asyncio.wait_for(write, self._timeout)
        except (DatabaseError, TimeoutError) as exc:
            log.warning(f"rate_budget_{what}_lost", key=key, error=str(exc) or type(exc).__name__)
