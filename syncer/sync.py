"""A pass: plan windows since the high-water mark, stream each, write batches, log the run.

Orchestration only: blocks of CSV records come from `CursorClient.stream_blocks` and go to
a `BatchWriter`, raw (PostgreSQL parses them) or parsed here (the typed path).

The high-water mark rule. A window's last batch and the mark commit in one transaction,
and only after the window's stream ended cleanly, so the mark never passes a row that
is not committed: a crash anywhere re-reads from the old mark on the next pass (the
upserts make re-reading harmless). The mark is the greatest `created_at` seen, and it
only moves forward (GREATEST in SQL). A pass whose range starts after the stored mark
(a backfill of a later range) never moves it: that would hide the gap in between.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from time import monotonic
from typing import Protocol, TypeVar

import structlog

from syncer.client.api import CursorClient
from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.errors import (
    ApiTimeout,
    EndpointBusy,
    ServerError,
    StreamInterrupted,
    SyncerError,
)
from syncer.parse.blocks import raw_columns
from syncer.store.batch import later
from syncer.store.store import Batch, BatchCounts, Outcome, RawBatch, Store
from syncer.timespec import isoformat_z, parse_spec

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: Failures after which a window is worth retrying in smaller halves.
#: Not a refused connection: halving a window cannot help an API that is down.
_SPLITTABLE = (ServerError, ApiTimeout, StreamInterrupted)


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open span of `created_at` requested in one call."""

    start: datetime
    end: datetime

    @property
    def span(self) -> timedelta:
        """The window's length."""
        return self.end - self.start

    def halves(self) -> tuple[Window, Window]:
        """The window cut in two at its middle."""
        middle = self.start + self.span / 2
        return Window(self.start, middle), Window(middle, self.end)

    def __str__(self) -> str:
        return f"{isoformat_z(self.start)}..{isoformat_z(self.end)}"


def plan_windows(start: datetime, end: datetime, size: timedelta) -> list[Window]:
    """Cut [start, end) into consecutive windows of at most `size`, oldest first."""
    windows = []
    cursor = start
    while cursor < end:
        stop = min(cursor + size, end)
        windows.append(Window(cursor, stop))
        cursor = stop
    return windows


class Progress(Protocol):
    """Receives progress of a pass (a progress bar, log lines, or metrics)."""

    def planned(self, endpoint: Endpoint, windows: int) -> None:
        """The pass will read this many windows."""

    def batch_written(self, endpoint: Endpoint, counts: BatchCounts) -> None:
        """A batch was committed."""

    def window_done(self, endpoint: Endpoint, window: Window) -> None:
        """A window was fully consumed and its mark committed."""


class NoProgress:
    """Progress that goes nowhere."""

    def planned(self, endpoint: Endpoint, windows: int) -> None:
        """Ignore."""

    def batch_written(self, endpoint: Endpoint, counts: BatchCounts) -> None:
        """Ignore."""

    def window_done(self, endpoint: Endpoint, window: Window) -> None:
        """Ignore."""


@dataclass(slots=True)
class PassResult:
    """What a pass of one endpoint did."""

    endpoint: Endpoint
    run_id: str
    outcome: Outcome
    windows: int = 0
    counts: BatchCounts = field(default_factory=BatchCounts)
    high_water_mark: datetime | None = None
    duration: float = 0.0
    error: SyncerError | None = None


@dataclass
class Pass:
    """One pass of one endpoint over [start, end); `run()` never raises SyncerError."""

    api: CursorClient
    store: Store
    settings: Settings
    endpoint: Endpoint
    command: str
    since: datetime | None = None
    until: datetime | None = None
    wait_for_lock: bool = False
    progress: Progress = field(default_factory=NoProgress)
    stop: asyncio.Event | None = None
    raw: bool = True  #: whether plain CSV blocks may take the raw path (False: always typed)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _started: float = field(default=0.0, init=False, repr=False)

    async def run(self) -> PassResult:
        """Take the endpoint's lock, consume every window, and write the run-log row."""
        result = PassResult(self.endpoint, self.run_id, Outcome.RUNNING)
        started = self._started = monotonic()
        bound = log.bind(run_id=self.run_id, endpoint=self.endpoint.value, command=self.command)
        try:
            async with self.store.endpoint_lock(self.endpoint, wait=self.wait_for_lock):
                await self._locked_run(result, bound)
        except EndpointBusy as exc:
            result.outcome, result.error = Outcome.SKIPPED, exc
            bound.info("pass_skipped", reason=str(exc))
            await _quietly(
                self.store.log_skipped(self.run_id, self.endpoint, self.command, str(exc))
            )
        except SyncerError as exc:  # before the windows: the lock, the mark, the run log
            result.outcome, result.error = Outcome.FAILED, exc
            bound.error("pass_failed", error=str(exc), windows_done=0)
        result.duration = monotonic() - started
        return result

    async def _locked_run(
        self, result: PassResult, bound: structlog.typing.FilteringBoundLogger
    ) -> None:
        now = datetime.now(timezone.utc)
        mark = await self.store.high_water_mark(self.endpoint)
        start = self.since or (
            mark - self.settings.sync_lookback
            if mark
            else parse_spec(self.settings.sync_start, now)
        )
        end = self.until or now
        advance = mark is None or start <= mark
        windows = plan_windows(start, end, self.settings.sync_window)
        self.progress.planned(self.endpoint, len(windows))
        row_id = await self.store.start_run(self.run_id, self.endpoint, self.command, start, end)
        try:
            for window in windows:
                if self._stopping():
                    raise asyncio.CancelledError
                result.counts.add(await self._window_or_halves(window, advance))
                result.windows += 1
                self.progress.window_done(self.endpoint, window)
            result.outcome = Outcome.SUCCESS
        except asyncio.CancelledError:
            result.outcome = Outcome.INTERRUPTED
            await _quietly(self._finish(row_id, result, None))
            raise
        except SyncerError as exc:
            result.outcome, result.error = Outcome.FAILED, exc
            bound.error("pass_failed", error=str(exc), windows_done=result.windows)
        result.high_water_mark = await _quietly(self.store.high_water_mark(self.endpoint))
        await _quietly(self._finish(row_id, result, result.error))
        if result.outcome is Outcome.SUCCESS:
            c = result.counts
            bound.info(
                "pass_done",
                window=f"{isoformat_z(start)}..{isoformat_z(end)}",
                windows=result.windows,
                inserted=c.inserted,
                updated=c.updated,
                unchanged=c.unchanged,
                rejected=c.rejected,
                high_water_mark=result.high_water_mark and isoformat_z(result.high_water_mark),
                duration_s=round(monotonic() - self._started, 3),
            )

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    async def _finish(self, row_id: int, result: PassResult, error: SyncerError | None) -> None:
        c = result.counts
        await self.store.finish_run(
            row_id,
            outcome=result.outcome.value,
            windows=result.windows,
            rows_inserted=c.inserted,
            rows_updated=c.updated,
            rows_unchanged=c.unchanged,
            rows_rejected=c.rejected,
            high_water_mark=result.high_water_mark,
            error=str(error) if error else None,
        )

    async def _window_or_halves(self, window: Window, advance: bool) -> BatchCounts:
        """Consume a window; if it keeps failing, retry it as two halves, down to a floor."""
        try:
            return await self._window(window, advance)
        except _SPLITTABLE as exc:
            if window.span / 2 < self.settings.sync_min_window:
                raise
            log.warning(
                "window_split", endpoint=self.endpoint.value, window=str(window), reason=str(exc)
            )
            left, right = window.halves()
            counts = await self._window_or_halves(left, advance)
            counts.add(await self._window_or_halves(right, advance))
            return counts

    async def _window(self, window: Window, advance: bool) -> BatchCounts:
        """Stream one window into batches; the last batch carries the new mark.

        Blocks of raw CSV records go to the server as they are (the raw path) when the header
        names only known columns and the block is plain CSV; otherwise they are parsed here,
        the typed way. Either way parsing or cutting the next block overlaps the write.
        """
        writer = _Writer(self.store, self.run_id, self.progress.batch_written)
        endpoint = self.endpoint
        block_bytes = max(_MIN_BLOCK, self.settings.sync_batch_rows * _ROW_BYTES)
        columns: list[str] | None = None
        header: bytes | None = None
        try:
            async with aclosing(
                self.api.stream_blocks(endpoint, window.start, window.end, block_bytes=block_bytes)
            ) as blocks:
                async for block in blocks:
                    if block.header is not header:  # the first block, or a retried stream
                        header = block.header
                        columns = raw_columns(endpoint, block.names) if self.raw else None
                    item: Batch | RawBatch
                    if columns is not None and block.plain:
                        item = RawBatch(endpoint, columns, block)
                    else:
                        item = Batch.parse(endpoint, block)
                    await writer.put(item)
                    if self._stopping():
                        raise asyncio.CancelledError
            await writer.put(Batch(endpoint), final=True, advance=advance)
            return await writer.drain()
        finally:
            await writer.abort()


#: The smallest raw block, and the bytes of a typical row (batch rows × this = block size).
_MIN_BLOCK = 16 * 1024
_ROW_BYTES = 256


Item = tuple[int, Batch | RawBatch, bool, bool]  # sequence number, batch, final, advance


class _Writer:
    """Writes a window's batches on `LANES` connections, committing them in order.

    Each lane stages and types its block (the raw path's server-side parse and conversion)
    while the previous batch is being upserted on another lane; the upserts themselves wait
    for their turn, so batches commit one after the other, in stream order: a later row
    still wins, and the final batch (which carries the mark) commits last. Parsing or cutting
    the next block on the client overlaps all of it.

    It also keeps the window's newest created_at (the raw path learns it from the server),
    and gives it to the transaction of the final batch as the new mark.
    """

    def __init__(
        self, store: Store, run_id: str, on_batch: Callable[[Endpoint, BatchCounts], None]
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._on_batch = on_batch
        self._queue: asyncio.Queue[Item | None] = asyncio.Queue(1)
        self._counts = BatchCounts()
        self._newest: datetime | None = None
        self._sent = 0  # batches queued
        self._committed = 0  # batches committed (they commit in order)
        self._turns = asyncio.Condition()
        self._lanes = [asyncio.create_task(self._lane()) for _ in range(LANES)]

    async def put(
        self, batch: Batch | RawBatch, *, final: bool = False, advance: bool = False
    ) -> None:
        """Queue a batch (waits while every lane is busy)."""
        self._sent += 1
        await self._put((self._sent, batch, final, advance))

    async def drain(self) -> BatchCounts:
        """Wait for every queued batch to commit; return the totals."""
        for _ in self._lanes:
            await self._put(None)
        done, _ = await asyncio.wait(self._lanes, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            await task  # re-raise a write failure
        return self._counts

    async def _put(self, item: Item | None) -> None:
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

    async def abort(self) -> None:
        """Stop writing: the batches in flight roll back."""
        for task in self._lanes:
            if not task.done():
                task.cancel()
        for task in self._lanes:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - aborting anyway
                pass

    async def _lane(self) -> None:
        async with self._store.writer() as writer:
            while (item := await self._queue.get()) is not None:
                seq, batch, final, advance = item

                async def turn(seq: int = seq) -> datetime | None:
                    async with self._turns:
                        await self._turns.wait_for(lambda: self._committed == seq - 1)
                    return self._newest

                if isinstance(batch, RawBatch):
                    counts, newest = await writer.write_raw(
                        batch, run_id=self._run_id, advance=final and advance, turn=turn
                    )
                else:
                    newest = batch.newest
                    counts = await writer.write(
                        batch, run_id=self._run_id, advance=final and advance, turn=turn
                    )
                async with self._turns:
                    self._newest = later(self._newest, newest)
                    self._counts.add(counts)
                    self._committed = seq
                    self._turns.notify_all()
                self._on_batch(batch.endpoint, counts)


#: Connections a window writes on: one stages and types a block while another upserts.
LANES = 2


async def _quietly(awaitable: Awaitable[T]) -> T | None:
    """Await a bookkeeping call; a database failure there is logged, not raised."""
    try:
        return await awaitable
    except SyncerError as exc:
        log.warning("bookkeeping_failed", error=str(exc))
        return None
