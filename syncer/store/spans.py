"""Stored rows of a span of `created_at`: counted, listed, and pruned of rows the API withdrew.

Spans are half-open, `start <= created_at < end`, as `syncer.client.counts` asks the API for
them. A change's file rows go with it (ON DELETE CASCADE).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from syncer.endpoints import Endpoint
from syncer.store.store import Store

_IN_SPAN = "created_at >= $1 AND created_at < $2"


async def count_stored(store: Store, endpoint: Endpoint, start: datetime, end: datetime) -> int:
    """Rows stored with `start <= created_at < end`."""
    async with store.raw() as conn:
        sql = f"SELECT count(*) FROM {endpoint.table} WHERE {_IN_SPAN}"
        return int(await conn.fetchval(sql, start, end))


async def stored_keys(store: Store, endpoint: Endpoint, start: datetime, end: datetime) -> set[str]:
    """Primary keys of the rows stored with `start <= created_at < end`."""
    async with store.raw() as conn:
        sql = f"SELECT {endpoint.key} FROM {endpoint.table} WHERE {_IN_SPAN}"
        return {record[0] for record in await conn.fetch(sql, start, end)}


@dataclass(frozen=True, slots=True)
class Pruned:
    """What pruning a span did: rows deleted, or why none were."""

    stored: int  #: rows stored in the span before
    withdrawn: int  #: of those, rows the span's complete read did not contain
    deleted: int  #: rows deleted (0 when refused)
    refused: str | None = None  #: why nothing was deleted, when something should have been


async def prune_span(
    store: Store,
    endpoint: Endpoint,
    start: datetime,
    end: datetime,
    seen: set[str],
    max_share: float,
) -> Pruned:
    """Delete rows stored in the span whose keys are not in `seen`, unless too many would go.

    One transaction; the caller holds the endpoint's lock, so no pass writes in between.
    Deleting more than `max_share` of the span's stored rows is refused whole: a wrong deletion
    is data loss in the copy, and that many withdrawn rows more likely means a read gone wrong.
    """
    async with store.raw() as conn, conn.transaction():
        sql = f"SELECT {endpoint.key} FROM {endpoint.table} WHERE {_IN_SPAN} FOR UPDATE"
        held = [record[0] for record in await conn.fetch(sql, start, end)]
        doomed = [key for key in held if key not in seen]
        if not doomed:
            return Pruned(len(held), 0, 0)
        if len(doomed) > max_share * len(held):
            share = f"{len(doomed)} of {len(held)} stored rows ({len(doomed) / len(held):.0%})"
            why = (
                f"nothing pruned: it would delete {share}, "
                f"more than SYNC_PRUNE_MAX ({max_share:.0%})"
            )
            return Pruned(len(held), len(doomed), 0, why)
        deleted = await conn.execute(
            f"DELETE FROM {endpoint.table} WHERE {endpoint.key} = ANY($3::text[]) AND {_IN_SPAN}",
            start,
            end,
            doomed,
        )
        return Pruned(len(held), len(doomed), int(deleted.split()[-1]))
