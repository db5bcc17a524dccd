"""Batches: the rows of one endpoint written together, and what writing them did.

A `Batch` holds parsed rows (the typed path); a `RawBatch` holds a block of CSV records for
the server to parse (the raw path). Either goes to a `BatchWriter` (syncer.store.writer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from syncer.endpoints import Endpoint
from syncer.parse.blocks import RawBlock
from syncer.parse.parser import CsvParser
from syncer.parse.rows import Rejected, Row


@dataclass(slots=True)
class BatchCounts:
    """What one upsert did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def add(self, other: BatchCounts) -> None:
        """Accumulate another batch's counts into this one."""
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected

    @property
    def rows(self) -> int:
        """Good rows written or confirmed unchanged."""
        return self.inserted + self.updated + self.unchanged


@dataclass(slots=True)
class Batch:
    """Rows of one endpoint to write together; a later row with the same key replaces an earlier."""

    endpoint: Endpoint
    rows: dict[str, Row] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    newest: datetime | None = None  #: the greatest created_at of the rows absorbed

    def __len__(self) -> int:
        return len(self.rows) + len(self.rejected)

    def absorb(self, items: Iterable[Row | Rejected]) -> None:
        """Add parsed items (a later row with the same key wins); track the newest created_at."""
        rows, newest = self.rows, self.newest
        created = _CREATED[self.endpoint]
        for item in items:
            if isinstance(item, Rejected):
                self.rejected.append(item)
                continue
            rows[item[0]] = item
            stamp = item[created]
            if newest is None or stamp > newest:
                newest = stamp
        self.newest = newest

    @classmethod
    def parse(cls, endpoint: Endpoint, block: RawBlock) -> Batch:
        """A block of raw CSV records read the typed way (each bad record rejected on its own)."""
        parser = CsvParser(endpoint)
        batch = cls(endpoint)
        batch.absorb(parser.feed(block.header))
        batch.absorb(parser.feed(block.data))
        batch.absorb(parser.close())
        return batch


@dataclass(frozen=True, slots=True)
class RawBatch:
    """A block of CSV records for the raw path, with the COPY column list of its header."""

    endpoint: Endpoint
    columns: list[str]
    block: RawBlock

    def __len__(self) -> int:
        return len(self.block.data)


#: Waits for the previous batch of a window to commit; returns the window's newest so far.
Turn = Callable[[], Awaitable[datetime | None]]

_CREATED = {e: next(i for i, c in enumerate(e.columns) if c.name == "created_at") for e in Endpoint}


def later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two optional moments."""
    return b if a is None else a if b is None else max(a, b)
