"""The high-water mark: where an endpoint's next pass starts, and the one rule that moves it.

A window's last batch and the mark commit in one transaction, and only after the window's
stream ended cleanly, so the mark never passes a row that is not committed: a crash anywhere
re-reads from the old mark on the next pass (the upserts make re-reading harmless). The mark
is the greatest `created_at` seen in the window, and it only moves forward (GREATEST in SQL).
A pass whose range starts after the stored mark (a backfill of a later range) never moves
it: that would hide the gap in between.

The ordered writer (syncer.store.ordered) hands each batch's transaction a `Turn`: waiting on
it orders the commits and yields the window's newest `created_at` so far; `new_mark` turns
that and the batch's own newest into the mark its transaction writes, if any.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

#: Moves an endpoint's mark forward, never back ($1 endpoint, $2 the new mark).
ADVANCE_MARK = (
    "INSERT INTO sync_state (endpoint, high_water_mark) VALUES ($1, $2) "
    "ON CONFLICT (endpoint) DO UPDATE SET updated_at = now(), high_water_mark = "
    "GREATEST(sync_state.high_water_mark, EXCLUDED.high_water_mark)"
)


def later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two optional moments."""
    return b if a is None else a if b is None else max(a, b)


def may_advance(stored: datetime | None, start: datetime) -> bool:
    """Whether a pass reading from `start` may move the mark (not past a gap it did not read)."""
    return stored is None or start <= stored


def new_mark(so_far: datetime | None, newest: datetime | None, *, advance: bool) -> datetime | None:
    """The mark a batch's transaction writes: the window's newest created_at including this
    batch's, when the batch carries the mark (`advance`); otherwise none."""
    return later(so_far, newest) if advance else None


async def _first() -> datetime | None:
    return None


@dataclass(frozen=True, slots=True)
class Turn:
    """A batch's hand-off with its window's ordered writer.

    `wait()` returns once the window's previous batch has committed, with the window's newest
    created_at so far; `advance` says this batch's transaction carries the window's new mark
    (the final batch of a fully read window). The default is a batch written on its own.
    """

    wait: Callable[[], Awaitable[datetime | None]] = _first
    advance: bool = False


#: A batch written on its own: nothing to wait for, no mark.
ALONE = Turn()
