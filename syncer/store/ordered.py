"""`OrderedWriter`: a window's batches written on two connections, committed in stream order.

Each lane stages and types its block (the raw path's server-side parse and conversion) while
the previous batch is being upserted on the other lane; the upserts themselves wait for their
turn, so batches commit one after the other, in stream order: the duplicate rule's "last to
arrive" holds across batches, and the final batch, which carries the mark, commits last.
Parsing or cutting the next block on the client overlaps all of it.

It also keeps the window's newest created_at (the raw path learns it from the server) and
hands it to each batch's transaction through its `Turn` (see syncer.store.mark).
`FinalBatch` makes the window's last batch that final one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from syncer.endpoints import Endpoint
from syncer.results import BatchCounts
from syncer.store.batch import Batch, RawBatch
from syncer.store.mark import Turn, later

#: Connections a window writes on: one stages and types a block while another upserts.
LANES = 2


class BatchSink(Protocol):
    """One connection's writes (`syncer.store.writer.BatchWriter`, or a fake in tests)."""

    async def write(self, batch: Batch, *, run_id: str, turn: Turn) -> BatchCounts:
        """Write a batch of parsed rows once `turn` comes."""

    async def write_raw(
        self, raw: RawBatch, *, run_id: str, turn: Turn
    ) -> tuple[BatchCounts, datetime | None]:
        """Write a raw block once `turn` comes; return its counts and newest created_at."""


@dataclass(frozen=True, slots=True)
class _Item:
    seq: int  #: position in the window's stream, from 1
    batch: Batch | RawBatch
    advance: bool  #: whether this batch's transaction moves the mark


class OrderedWriter:
    """Writes a window's batches on `lanes` connections, committing them in stream order."""

    def __init__(
        self,
        open_writer: Callable[[], AbstractAsyncContextManager[BatchSink]],
        run_id: str,
        on_batch: Callable[[Endpoint, BatchCounts], None],
        *,
        lanes: int = LANES,
    ) -> None:
        self._open_writer = open_writer
        self._run_id = run_id
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(1)
        self._counts = BatchCounts()
        self._newest: datetime | None = None
        self._sent = 0  # batches queued
        self._committed = 0  # batches committed (they commit in order)
        self._turns = asyncio.Condition()
        self._max_lanes = lanes
        self._lanes: list[asyncio.Task[None]] = []

    async def put(self, batch: Batch | RawBatch) -> None:
        """Queue a batch (waits while every lane is busy); a lane's failure is raised here."""
        self._sent += 1
        await self._put(_Item(self._sent, batch, advance=False))

    def start(self) -> None:
        """Open the first lane now rather than with the first batch: its connection and
        staging tables are made while the window's first request is in flight."""
        self._open_lane()

    def _open_lane(self) -> None:
        # Lanes open as batches come: a window of one batch (an incremental pass) takes one
        # connection, not a second one it would never write on.
        if len(self._lanes) < min(self._max_lanes, max(self._sent, 1)):
            self._lanes.append(asyncio.create_task(self._lane()))

    async def finish(self, batch: Batch | RawBatch, *, advance: bool) -> BatchCounts:
        """Queue the window's final batch, which commits last and, with `advance`, moves the
        mark to the window's newest created_at; wait for every batch; return the totals."""
        self._sent += 1
        await self._put(_Item(self._sent, batch, advance=advance))
        for _ in self._lanes:
            await self._put(None)
        done, _ = await asyncio.wait(self._lanes, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            await task  # re-raise a write failure
        return self._counts

    async def abort(self) -> None:
        """Stop writing: the batches in flight roll back (a no-op after `finish`)."""
        for task in self._lanes:
            if not task.done():
                task.cancel()
        for task in self._lanes:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - aborting anyway
                pass

    async def _put(self, item: _Item | None) -> None:
        if item is not None:
            self._open_lane()
        # A write failure ends its lane: re-raise it rather than wait on a queue nobody reads.
        for task in self._lanes:
            if task.done():
                await task
        put = asyncio.ensure_future(self._queue.put(item))
        done, _ = await asyncio.wait({put, *self._lanes}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            for task in done:
                await task
            raise RuntimeError("a writer lane ended early")  # pragma: no cover

    def _turn(self, item: _Item) -> Turn:
        async def wait() -> datetime | None:
            async with self._turns:
                await self._turns.wait_for(lambda: self._committed == item.seq - 1)
            return self._newest

        return Turn(wait, item.advance)

    async def _lane(self) -> None:
        async with self._open_writer() as writer:
            while (item := await self._queue.get()) is not None:
                batch, turn = item.batch, self._turn(item)
                if isinstance(batch, RawBatch):
                    counts, newest = await writer.write_raw(batch, run_id=self._run_id, turn=turn)
                else:
                    newest = batch.newest
                    counts = await writer.write(batch, run_id=self._run_id, turn=turn)
                async with self._turns:
                    self._newest = later(self._newest, newest)
                    self._counts.add(counts)
                    self._committed = item.seq
                    self._turns.notify_all()
                self._on_batch(batch.endpoint, counts)


@dataclass
class FinalBatch:
    """Makes a window's last batch the writer's final one (`OrderedWriter.finish`), whose
    transaction carries the mark: a window (an incremental pass is one) then commits once, not
    a second time for the mark alone.

    A CSV stream flags its last block, yielded only once the body has ended cleanly; a batch
    not known to be the last (a JSON page) is held back until the next one comes.
    """

    writer: OrderedWriter
    endpoint: Endpoint
    held: Batch | RawBatch | None = None

    async def put(self, batch: Batch | RawBatch, *, last: bool | None = None) -> None:
        """Queue a batch; `last`: whether it is the window's last (None: not known)."""
        if self.held is not None:
            await self.writer.put(self.held)
            self.held = None
        if last is False:
            await self.writer.put(batch)
        else:
            self.held = batch

    async def finish(self, *, advance: bool) -> BatchCounts:
        """Queue the held batch (an empty one if none came) as the window's final one."""
        held, self.held = self.held or Batch(self.endpoint), None
        return await self.writer.finish(held, advance=advance)
