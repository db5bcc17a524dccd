"""The `rate_budget` table: per endpoint key, the recent grants, those still pending, a 429's hold.

Only the SQL lives here; `syncer.client.budget` decides what to book. A booking locks the key's
row (`SELECT … FOR UPDATE`) for the few milliseconds of one transaction: the decision is made
inside it, by the database's clock (one clock for every process of the team), and no lock is
held while anyone waits. A test may give a clock of its own instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from syncer.store.store import Store

T = TypeVar("T")

_CREATE = "INSERT INTO rate_budget (key) VALUES ($1) ON CONFLICT (key) DO NOTHING"
_LOCK = "SELECT grants, pending, not_before FROM rate_budget WHERE key = $1 FOR UPDATE"
_NOW = "SELECT COALESCE($1::timestamptz, clock_timestamp())"
_BOOK = "UPDATE rate_budget SET grants = $2, pending = $3, updated_at = now() WHERE key = $1"
_SETTLE = (
    "UPDATE rate_budget SET updated_at = now(), pending = array_remove(pending, $2), "
    "grants = array_replace(grants, $2, GREATEST($2, COALESCE($3, clock_timestamp()))) "
    "WHERE key = $1 AND $2 = ANY(pending)"
)
_PENALIZE = (
    "INSERT INTO rate_budget AS b (key, not_before) "
    "VALUES ($1, COALESCE($3, clock_timestamp()) + make_interval(secs => $2)) "
    "ON CONFLICT (key) DO UPDATE SET updated_at = now(), "
    "not_before = GREATEST(b.not_before, EXCLUDED.not_before)"
)


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """A key's row as read under its lock."""

    grants: Sequence[datetime]  #: recent grants (a pending one at its booking, unique)
    pending: frozenset[datetime]  #: the grants not settled yet
    not_before: datetime | None  #: no grant before this (a 429's Retry-After)
    now: datetime  #: the clock when the row was read


#: What a booking writes back: the grants still worth keeping, and which of them are pending.
Booking = tuple[list[datetime], list[datetime]]
#: Looks at a locked row; returns what to write (None: nothing) and what to tell the caller.
Decide = Callable[[BudgetRow], tuple[Booking | None, T]]


class RateBudgetTable:
    """The team's bookings in `rate_budget`; raises DatabaseError when PostgreSQL fails."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._clock = clock

    def __repr__(self) -> str:
        return "RateBudgetTable()"

    async def book(self, key: str, decide: Decide[T]) -> T:
        """Lock `key`'s row, let `decide` look at it, and write its booking in one transaction."""
        async with self._store.raw() as conn, conn.transaction():
            await conn.execute(_CREATE, key)
            row = await conn.fetchrow(_LOCK, key)
            now: datetime = await conn.fetchval(_NOW, self._now())
            state = BudgetRow(
                list(row["grants"]), frozenset(row["pending"]), row["not_before"], now
            )
            booking, answer = decide(state)
            if booking is not None:
                await conn.execute(_BOOK, key, *booking)
        return answer

    async def settle(self, key: str, booking: datetime) -> None:
        """The request booked at `booking` was counted: it counts from now on, not pending."""
        async with self._store.raw() as conn:
            await conn.execute(_SETTLE, key, booking, self._now())

    async def penalize(self, key: str, seconds: float) -> None:
        """No grant on `key` for `seconds` from now (a 429), for every process."""
        async with self._store.raw() as conn:
            await conn.execute(_PENALIZE, key, seconds, self._now())

    def _now(self) -> datetime | None:
        return self._clock() if self._clock is not None else None
