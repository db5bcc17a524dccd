"""Deletions: after a window was read completely, drop stored rows the API no longer serves.

Off by default (SYNC_PRUNE=false): the API's document says nothing about rows being withdrawn
nor on which timestamp its range filters, so a row missing from a response is not proof that
it is gone. When on, a window is pruned only when all of these hold, because a wrong deletion
is data loss in the copy:

- its stream ended cleanly (a failed window raises before it gets here);
- every record of it was read (a quarantined record's key is unknown: it may be a stored row);
- the API's own count for the window (`totalCount`) agrees with what the stream delivered:
  no more than the records received (a response cut cleanly short delivers fewer), no fewer
  than the distinct keys (the API may count an amended commit twice);
- the rows to delete are at most SYNC_PRUNE_MAX of the window's stored rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

import structlog

from syncer.client.api import CursorClient
from syncer.client.counts import MS, count_rows, floor_ms
from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.store.batch import Batch, RawBatch
from syncer.store.spans import Pruned, prune_span
from syncer.store.store import Store

log = structlog.get_logger(__name__)

#: The end of an open-ended window on the store's side: every row from its start on.
FAR = datetime(9999, 1, 1, tzinfo=timezone.utc)


@dataclass(slots=True)
class Seen:
    """What one response of a window delivered: its keys and how many records."""

    keys: set[str] = field(default_factory=set)
    served: int = 0  #: records, a repeated key counted each time
    rejected: int = 0  #: records that could not be read
    unread: int = 0  #: blocks that went the raw way (their keys are not known here)

    def add(self, item: Batch | RawBatch) -> None:
        """Note a batch of the response."""
        if isinstance(item, RawBatch):
            self.unread += 1
            return
        self.keys.update(item.rows)
        self.served += item.served
        self.rejected += len(item.rejected)


class Span(Protocol):
    """A window as it was requested: both ends included, as the API reads them."""

    @property
    def start(self) -> datetime: ...
    @property
    def request_end(self) -> datetime | None:
        """The end sent, or None for the API's own `now` (a pass's newest window)."""
        ...


async def prune_window(
    api: CursorClient,
    store: Store,
    settings: Settings,
    endpoint: Endpoint,
    window: Span,
    seen: Seen,
    warnings: list[str],
) -> int:
    """Prune a window read completely; return the rows deleted, note a refusal in `warnings`."""
    pruned = await _prune(api, store, endpoint, window, seen, settings.sync_prune_max)
    if pruned.refused is not None:
        warnings.append(f"{window}: {pruned.refused}")
    return pruned.deleted


async def _prune(
    api: CursorClient,
    store: Store,
    endpoint: Endpoint,
    window: Span,
    seen: Seen,
    max_share: float,
) -> Pruned:
    last = window.request_end
    first, stop = floor_ms(window.start), None if last is None else floor_ms(last) + MS
    bound = log.bind(endpoint=endpoint.value, window=str(window))
    why = _not_safe(seen)
    if why is None:
        total = await count_rows(api, endpoint, first, stop)  # after the read: rows arriving
        why = _disagrees(total, seen)  # in between make it disagree, so nothing is deleted
    if why is not None:
        bound.warning("prune_skipped", reason=why)
        return Pruned(0, 0, 0, f"nothing pruned: {why}")
    pruned = await prune_span(store, endpoint, first, stop or FAR, seen.keys, max_share)
    if pruned.refused is not None:
        bound.error(
            "prune_refused", reason=pruned.refused,
            hint="nothing was deleted; `syncer verify` reports the span; if the API really "
            "withdrew these rows, raise SYNC_PRUNE_MAX for one run",
        )  # fmt: skip
    elif pruned.deleted:
        bound.info("pruned", deleted=pruned.deleted, stored=pruned.stored)
    return pruned


def _not_safe(seen: Seen) -> str | None:
    if seen.unread:
        return "part of the window went the raw way, its keys unknown"  # pragma: no cover
    if seen.rejected:
        return f"{seen.rejected} record(s) could not be read, their keys are unknown"
    return None


def _disagrees(total: int, seen: Seen) -> str | None:
    if total > seen.served:
        return f"the API counts {total} rows but the response delivered {seen.served}"
    if total < len(seen.keys):
        return f"the API counts {total} rows but the response held {len(seen.keys)} keys"
    return None
