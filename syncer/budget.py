"""The team-wide request budget: grants booked in PostgreSQL, the in-process limiter in front.

Cursor allows 5 requests per minute per team and endpoint, not per process: the daemon and a
`syncer backfill` started beside it must share one budget or they collide into 429s. Every
process of a team writes into the same database, so that is where the budget lives.

The policy. Before each request a process books a slot in the endpoint's `rate_budget` row,
under the row lock (`SELECT … FOR UPDATE`): the earliest instant, by the database's clock, at
which the last `requests` grants leave room in a sliding window of `period` seconds, or after
a 429's `Retry-After`, whichever is later. It records the slot, commits, and only then sleeps
until it. Booking a future slot rather than sleeping under the lock keeps every transaction a
few milliseconds long, and the lock queue serves processes in the order they asked. A margin
is added to the period, because a request reaches the server a little after its slot (timer
slack, a busy event loop, the network), and two of them must never land in one window.

The in-process `RateLimiters` is the fast path: jobs of one process queue there first, so only
requests that may go soon touch the database. When PostgreSQL cannot be reached, that limiter
alone keeps this process within the limit (logged once), and booking resumes when it is back.
Every process of a team must use the same CURSOR_RATE_LIMIT_* settings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from datetime import datetime, timedelta
from time import monotonic
from types import TracebackType

import structlog

from syncer.config import Settings
from syncer.errors import DatabaseError
from syncer.ratelimit import RateLimiters
from syncer.store import Store

log = structlog.get_logger(__name__)

_CREATE = "INSERT INTO rate_budget (key) VALUES ($1) ON CONFLICT (key) DO NOTHING"
_LOCK = "SELECT grants, not_before FROM rate_budget WHERE key = $1 FOR UPDATE"
_BOOK = "UPDATE rate_budget SET grants = $2, updated_at = now() WHERE key = $1"
_PENALIZE = (
    "INSERT INTO rate_budget AS b (key, not_before) "
    "VALUES ($1, clock_timestamp() + make_interval(secs => $2)) "
    "ON CONFLICT (key) DO UPDATE SET updated_at = now(), "
    "not_before = GREATEST(b.not_before, EXCLUDED.not_before)"
)


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

    `grants` are sorted; a new grant must be at least `period` after the `requests`-th last
    one, so no window of `period` holds more than `requests` (later grants may be booked
    slots still in the future: the rule holds for them too).
    """
    slot = max(now, not_before) if not_before is not None else now
    if len(grants) >= requests:
        slot = max(slot, grants[-requests] + period)
    return slot


class PostgresBudget:
    """A `RequestBudget` shared by every syncer process writing to the same database."""

    def __init__(
        self,
        store: Store,
        requests: int,
        period: float,
        *,
        margin: float | None = None,
        timeout: float = 5.0,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.requests = requests
        self.period = period + (default_margin(period) if margin is None else margin)
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
        """The budget for the configured rate limit; `stop` abandons waits (see `acquire`)."""
        requests, period = settings.rate_limit
        return cls(store, requests, period, stop=stop)

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
        """Let penalties still being written reach the database (bounded by the timeout)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._timeout)

    async def acquire(self, key: str) -> float:
        """Wait until a request on `key` fits the team's budget; return the seconds waited.

        Once the `stop` event is set, waiting ends at once with CancelledError: nothing was
        sent yet, so a shutdown need not sit out a minute of budget.
        """
        started = monotonic()
        await self._unless_stopped(self._local.acquire(key))
        delay = await self._book(key)
        if delay > 0:
            await self._unless_stopped(asyncio.sleep(delay))
        return monotonic() - started

    async def _unless_stopped(self, waiting: Awaitable[object]) -> None:
        if self._stop is None:
            await waiting
            return
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
        wait.result()

    def penalize(self, key: str, retry_after: float) -> None:
        """Hold back every process's requests on `key` for `retry_after` seconds (a 429)."""
        self._local.penalize(key, retry_after)
        task = asyncio.get_running_loop().create_task(self._penalize(key, retry_after))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _book(self, key: str) -> float:
        """Book the next slot of `key` in the database; seconds until it (0 when degraded)."""
        try:
            delay = await asyncio.wait_for(self._book_slot(key), self._timeout)
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
            return 0.0
        if self._degraded:
            log.info("rate_budget_shared_again", key=key)
            self._degraded = False
        return delay

    async def _book_slot(self, key: str) -> float:
        async with self._store.raw() as conn, conn.transaction():
            await conn.execute(_CREATE, key)
            row = await conn.fetchrow(_LOCK, key)
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            grants = sorted(row["grants"])
            period = timedelta(seconds=self.period)
            slot = next_slot(grants, row["not_before"], now, self.requests, period)
            await conn.execute(_BOOK, key, sorted([*grants, slot])[-self.requests :])
        return (slot - now).total_seconds()

    async def _penalize(self, key: str, retry_after: float) -> None:
        try:
            async with self._store.raw() as conn:
                await asyncio.wait_for(conn.execute(_PENALIZE, key, retry_after), self._timeout)
        except (DatabaseError, TimeoutError) as exc:
            log.warning("rate_budget_penalty_lost", key=key, error=str(exc) or type(exc).__name__)
