"""The team-wide request budget: grants booked in PostgreSQL, the in-process limiter in front.

Cursor allows 5 requests per minute per team and endpoint, not per process: the daemon and a
`syncer backfill` started beside it must share one budget or they collide into 429s. Every
process of a team writes into the same database, so that is where the budget lives.

The policy. Before each request a process takes the endpoint's `rate_budget` row lock
(`SELECT … FOR UPDATE`) and asks, by the database's clock, whether one more request now keeps
every sliding window of `period` seconds within `requests` grants and is past a 429's
`Retry-After`. If so it books the grant and commits; if not it commits without booking and
sleeps until the earliest instant it could, then asks again. Transactions stay a few
milliseconds long and no lock is held while waiting.

The server counts a request when it arrives, and a request can be late on the way (a slow
connect, a busy event loop on either side). So, as in `client.ratelimit`, a grant is booked as
*pending* and settled once the response began or the attempt failed: its time then moves to
that instant, which is never earlier than the server's count. A pending grant counts as "now"
(the server may count it at any moment), for at most the client's connect and read timeouts,
after which a crashed process's grant no longer holds anyone back. A small margin on the
period covers the server's clock running slightly differently from the database's.

The in-process `RateLimiters` is the fast path: jobs of one process queue there first, so only
requests that may go soon touch the database. When PostgreSQL cannot be reached, that limiter
alone keeps this process within the limit (logged once), and booking resumes when it is back.
Every process of a team must use the same CURSOR_RATE_LIMIT_* settings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Coroutine, Sequence
from datetime import datetime, timedelta
from time import monotonic
from types import TracebackType
from typing import TypeVar

import structlog

from syncer.client.ratelimit import Grant, RateLimiters, settle_poll
from syncer.config import Settings
from syncer.errors import DatabaseError
from syncer.store.store import Store

log = structlog.get_logger(__name__)

T = TypeVar("T")

_CREATE = "INSERT INTO rate_budget (key) VALUES ($1) ON CONFLICT (key) DO NOTHING"
_LOCK = "SELECT grants, pending, not_before FROM rate_budget WHERE key = $1 FOR UPDATE"
_BOOK = "UPDATE rate_budget SET grants = $2, pending = $3, updated_at = now() WHERE key = $1"
_SETTLE = (
    "UPDATE rate_budget SET updated_at = now(), pending = array_remove(pending, $2), "
    "grants = array_replace(grants, $2, GREATEST($2, clock_timestamp())) "
    "WHERE key = $1 AND $2 = ANY(pending)"
)
_PENALIZE = (
    "INSERT INTO rate_budget AS b (key, not_before) "
    "VALUES ($1, clock_timestamp() + make_interval(secs => $2)) "
    "ON CONFLICT (key) DO UPDATE SET updated_at = now(), "
    "not_before = GREATEST(b.not_before, EXCLUDED.not_before)"
)
_TICK = timedelta(microseconds=1)


def default_margin(period: float) -> float:
    """Seconds added to the period: 5% of it, at least a quarter second."""
    return max(0.05 * period, 0.25)


def next_slot(
    grants: Sequence[datetime],
    not_before: datetime | None,
    now: datetime,
    requests: int,
    period: timedelta,
) -> datetime:
    """The earliest instant from `now` at which one more grant keeps every window within limit.

    `grants` are the sorted times the server counted (or may count) recent requests at; a new
    grant must be at least `period` after the `requests`-th last one, so no window of `period`
    holds more than `requests`.
    """
    slot = max(now, not_before) if not_before is not None else now
    if len(grants) >= requests:
        slot = max(slot, grants[-requests] + period)
    return slot


def counted_at(
    grant: datetime, pending: frozenset[datetime], now: datetime, in_flight: timedelta
) -> datetime:
    """When the server counts `grant` at the latest, as far as is known `now`.

    A settled grant is stored at an instant the server had counted it by. A pending one may
    be counted any moment, so it is "now", until `in_flight` after its booking: by then its
    process has had its answer or given up (or died), and it is counted at that bound.
    """
    if grant not in pending:
        return grant
    return min(max(grant, now), grant + in_flight)


class PostgresBudget:
    """A `RequestBudget` shared by every syncer process writing to the same database."""

    def __init__(
        self,
        store: Store,
        requests: int,
        period: float,
        *,
        margin: float | None = None,
        in_flight: float = 135.0,
        timeout: float = 5.0,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.requests = requests
        self.period = period + (default_margin(period) if margin is None else margin)
        self._in_flight = timedelta(seconds=in_flight)
        self._store = store
        self._timeout = timeout
        self._stop = stop
        self._local = RateLimiters(requests, self.period)
        self._tasks: set[asyncio.Task[None]] = set()
        self._degraded = False

    @classmethod
    def from_settings(
        cls, store: Store, settings: Settings, *, stop: asyncio.Event | None = None
    ) -> PostgresBudget:
        """The budget for the configured rate limit; `stop` abandons waits (see `acquire`).

        A request in flight has had its answer, or failed, within the connect and read
        timeouts: that bounds how long a pending grant holds others back.
        """
        requests, period = settings.rate_limit
        in_flight = settings.cursor_connect_timeout + settings.cursor_read_timeout
        return cls(store, requests, period, in_flight=in_flight.total_seconds(), stop=stop)

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

        Once the `stop` event is set, waiting ends at once with CancelledError: nothing was
        sent yet, so a shutdown need not sit out a minute of budget.
        """
        started = monotonic()
        grant = await self._unless_stopped(self._local.acquire(key))
        try:
            while True:
                booking, wait = await self._book(key)
                if booking is not None or wait <= 0:
                    break
                await self._unless_stopped(asyncio.sleep(wait))
        except BaseException:
            self._local.settle(grant)  # never sent: it holds this process back no longer
            raise
        grant.booking = booking
        grant.waited = monotonic() - started
        return grant

    def settle(self, grant: Grant) -> None:
        """The server has counted `grant`'s request: record when, here and for the team."""
        self._local.settle(grant)
        booking, grant.booking = grant.booking, None
        if isinstance(booking, datetime):
            self._spawn(self._write(_SETTLE, grant.key, booking, what="settlement"))

    def penalize(self, key: str, retry_after: float) -> None:
        """Hold back every process's requests on `key` for `retry_after` seconds (a 429)."""
        self._local.penalize(key, retry_after)
        self._spawn(self._write(_PENALIZE, key, retry_after, what="penalty"))

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
            raise asyncio.CancelledError("stopping: the request was not sent")
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
            booked = await asyncio.wait_for(self._book_now(key), self._timeout)
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

    async def _book_now(self, key: str) -> tuple[datetime | None, float]:
        async with self._store.raw() as conn, conn.transaction():
            await conn.execute(_CREATE, key)
            row = await conn.fetchrow(_LOCK, key)
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            pending = frozenset(row["pending"])
            counted = {g: counted_at(g, pending, now, self._in_flight) for g in row["grants"]}
            period = timedelta(seconds=self.period)
            times = sorted(counted.values())
            slot = next_slot(times, row["not_before"], now, self.requests, period)
            if slot > now:
                wait = (slot - now).total_seconds()
                flying = any(counted[g] >= now for g in pending if g in counted)
                if flying and len(times) >= self.requests and times[-self.requests] >= now:
                    wait = min(wait, settle_poll(self.period))  # held back by one in flight
                return None, wait
            booking = max([now, *(g + _TICK for g in counted)])  # unique: settled by value
            kept = sorted(g for g, at in counted.items() if at > now - period)
            in_flight = [g for g in kept if g in pending]
            await conn.execute(_BOOK, key, [*kept, booking], [*in_flight, booking])
        return booking, 0.0

    async def _write(self, statement: str, key: str, value: object, *, what: str) -> None:
        try:
            async with self._store.raw() as conn:
                await asyncio.wait_for(conn.execute(statement, key, value), self._timeout)
        except (DatabaseError, TimeoutError) as exc:
            log.warning(f"rate_budget_{what}_lost", key=key, error=str(exc) or type(exc).__name__)
