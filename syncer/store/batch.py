"""Batches: the rows of one endpoint written together, and what writing them did.

A `Batch` holds parsed rows (the typed path); a `RawBatch` holds a block of CSV records for
the server to parse (the raw path). Either goes to a `BatchWriter` (syncer.store.writer).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from syncer.endpoints import Endpoint
from syncer.parse.blocks import RawBlock
from syncer.parse.parser import parse_block
from syncer.parse.rows import Rejected, Row


@dataclass(slots=True)
class Batch:
    """Rows of one endpoint to write together, one per key (see `absorb` for which one)."""

    endpoint: Endpoint
    rows: dict[str, Row] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    newest: datetime | None = None  #: the greatest created_at of the rows absorbed
    served: int = 0  #: records absorbed, a key repeated in the stream counted each time

    def __len__(self) -> int:
        return len(self.rows) + len(self.rejected)

    def absorb(self, items: Iterable[Row | Rejected]) -> None:
        """Add parsed items; track the newest created_at.

        The duplicate rule (the contract's): of rows with the same key, the one with the
        greatest created_at wins, and on equal created_at the one that arrived last. The API
        serves an amended commit again, newest first, so "the last" alone would keep the
        oldest version. The upsert's guard applies the same rule across batches and passes.
        """
        rows, newest = self.rows, self.newest
        created = _CREATED[self.endpoint]
        keep = rows.setdefault
        served = 0
        for item in items:
            served += 1
            if isinstance(item, Rejected):
                self.rejected.append(item)
                continue
            stamp = item[created]
            kept = keep(item[0], item)
            if kept is not item and stamp >= kept[created]:
                rows[item[0]] = item
            if newest is None or stamp > newest:
                newest = stamp
        self.newest = newest
        self.served += served

    @classmethod
    def parse(cls, endpoint: Endpoint, block: RawBlock) -> Batch:
        """A block of raw CSV records read the typed way (each bad record rejected on its own)."""
        batch = cls(endpoint)
        batch.absorb(parse_block(endpoint, block))
        return batch


@dataclass(frozen=True, slots=True)
class RawBatch:
    """A block of CSV records for the raw path, with the COPY column list of its header.

    `fresh`: written by a pass that began on empty tables (a first load), so no stored row can
    be one it serves unchanged, and none is looked up by digest (a probe per row saved).
    """

    endpoint: Endpoint
    columns: list[str]
    block: RawBlock
    fresh: bool = False

    def __len__(self) -> int:
        return len(self.block.data)


_CREATED = {e: next(i for i, c in enumerate(e.columns) if c.name == "created_at") for e in Endpoint}
