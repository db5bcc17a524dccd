"""A pass: plan windows since the high-water mark, stream each, write batches, log the run.

Orchestration only: blocks of CSV records come from `CursorClient.stream_blocks` and go to
an `OrderedWriter`, raw (PostgreSQL parses them) or parsed here (the typed path). The
high-water mark rule (a window's mark commits with its last batch, only forward, never past
a gap) is syncer.store.mark's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from time import monotonic
from typing import TypeVar

import structlog

from syncer.client.api import CursorClient
from syncer.client.paging import read_json_window
from syncer.config import MAX_WINDOW, ApiFormat, Settings
from syncer.endpoints import Endpoint
from syncer.errors import (
    ApiTimeout,
    BadRequest,
    CsvUnavailable,
    EndpointBusy,
    Interrupted,
    ServerError,
    StreamInterrupted,
    SyncerError,
)
from syncer.parse.blocks import raw_columns
from syncer.prune import Seen, prune_window
from syncer.results import BatchCounts, NoProgress, Outcome, PassResult, Progress, Window
from syncer.store.batch import Batch, RawBatch
from syncer.store.mark import may_advance
from syncer.store.ordered import FinalBatch, OrderedWriter
from syncer.store.store import LockedEndpoint, Store
from syncer.store.writer import BatchWriter
from syncer.timespec import isoformat_z, parse_spec

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: Failures after which a window is worth retrying in smaller halves.
#: Not a refused connection: halving a window cannot help an API that is down.
_SPLITTABLE = (ServerError, ApiTimeout, StreamInterrupted)
#: The shortest window a 400 is taken as "range too long" for; a 400 to a day is an error.
_MIN_RANGE = timedelta(days=1)


def plan_windows(
    start: datetime, end: datetime, size: timedelta, *, open_end: bool = False
) -> list[Window]:
    """Cut [start, end) into consecutive windows of at most `size`, oldest first.

    With `open_end`, the newest window is requested up to the API's own `now` rather than up
    to `end` (our clock): a clock running ahead of the API's, or an API that reads instants
    at day granularity, cannot then hide the newest rows.
    """
    return Window(start, end, open_end).cut(size)


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
    #: the forms that served this pass's requests (`csv`, `json`)
    forms: set[str] = field(default_factory=set)
    prune: bool = False  #: delete stored rows a window read cleanly lacks (syncer.prune)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _started: float = field(default=0.0, init=False, repr=False)
    _kept: BatchCounts = field(default_factory=BatchCounts, init=False, repr=False)
    _warnings: list[str] = field(default_factory=list, init=False, repr=False)
    #: the pass began on empty tables (it set their indexes aside): see RawBatch.fresh
    _fresh: bool = field(default=False, init=False, repr=False)

    async def run(self) -> PassResult:
        """Take the endpoint's lock, consume every window, and write the run-log row."""
        result = PassResult(self.endpoint, self.run_id, Outcome.RUNNING, warnings=self._warnings)
        started = self._started = monotonic()
        bound = log.bind(run_id=self.run_id, endpoint=self.endpoint.value, command=self.command)
        try:
            async with self.store.endpoint_lock(self.endpoint, wait=self.wait_for_lock) as held:
                await self._locked_run(held, result, bound)
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
        self,
        held: LockedEndpoint,
        result: PassResult,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> None:
        now = datetime.now(timezone.utc)
        mark = await held.high_water_mark()
        start = self.since or (
            mark - self.settings.sync_lookback
            if mark
            else parse_spec(self.settings.sync_start, now)
        )
        end = self.until or now
        advance = may_advance(mark, start)
        size = min(self.settings.sync_window, self.api.window_caps.get(self.endpoint, _MAX_SPAN))
        windows = plan_windows(start, end, size, open_end=self.until is None)
        self.progress.planned(self.endpoint, len(windows))
        aside = self._fresh = await self._indexes_aside(held, end - start)
        row_id = await held.start_run(self.run_id, self.command, start, end)
        requests = self.api.requests(self.endpoint)  # this pass's are counted from here
        try:
            for window in windows:
                if self._stopping():
                    raise Interrupted(_STOPPED)
                result.counts.add(await self._window_or_halves(window, advance))
                result.windows += 1
                self.progress.window_done(self.endpoint, window)
            if aside:  # built within the pass's time: a first load costs its indexes
                aside = False
                await held.restore_indexes()
            result.outcome = Outcome.SUCCESS
        except Interrupted:  # asked to stop: what was committed stays, and is counted
            aside = False  # a stop does not wait for index builds: the next command does them
            result.outcome, result.counts = Outcome.INTERRUPTED, self._kept
            bound.info("pass_stopped", windows_done=result.windows, rows_kept=self._kept.rows)
        except asyncio.CancelledError:  # cancelled for real: the batch in flight rolls back
            aside = False  # as for a stop (status warns until the next command rebuilds them)
            result.outcome, result.counts = Outcome.INTERRUPTED, self._kept
            result.requests = self.api.requests(self.endpoint) - requests
            await _quietly(self._finish(held, row_id, result, None))
            raise
        except SyncerError as exc:
            result.outcome, result.error = Outcome.FAILED, exc
            bound.error("pass_failed", error=str(exc), windows_done=result.windows)
        finally:
            if aside:  # failed: put them back before the lock goes
                await _quietly(held.restore_indexes())
        result.requests = self.api.requests(self.endpoint) - requests
        await _quietly(self._finish(held, row_id, result, result.error))
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
                deleted=c.deleted,
                requests=result.requests,
                high_water_mark=result.high_water_mark and isoformat_z(result.high_water_mark),
                duration_s=round(monotonic() - self._started, 3),
            )

    async def _indexes_aside(self, held: LockedEndpoint, span: timedelta) -> bool:
        """Rebuild the indexes a killed first load left out; then, if the endpoint's tables
        are empty and the range is long, set them aside until the load ends (see
        syncer.store.deferred). Whether they are aside now."""
        await held.restore_indexes()
        return span > _SET_ASIDE_SPAN and await held.set_indexes_aside()

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    async def _finish(
        self, held: LockedEndpoint, row_id: int, result: PassResult, error: SyncerError | None
    ) -> None:
        """Write the run-log row's end; `result` gets the mark it recorded."""
        c = result.counts
        result.high_water_mark = await held.finish_run(
            row_id,
            outcome=result.outcome.value,
            windows=result.windows,
            rows_inserted=c.inserted,
            rows_updated=c.updated,
            rows_unchanged=c.unchanged,
            rows_rejected=c.rejected,
            rows_deleted=c.deleted,
            requests=result.requests,
            api_format="+".join(sorted(self.forms)) or None,
            error=str(error) if error else "; ".join(result.warnings) or None,
        )

    async def _window_or_halves(self, window: Window, advance: bool) -> BatchCounts:
        """Consume a window; if it keeps failing, retry it as two halves, down to a floor.

        A 400 to a window longer than a day means "range too long" (the API caps a request's
        range, and the cap is not documented): the window is read as halves, and the half's
        size is kept as this endpoint's longest window for the rest of the process.
        """
        cap = self.api.window_caps.get(self.endpoint, _MAX_SPAN)
        if window.span > cap:  # learned after this window was planned: never send it whole
            counts = BatchCounts()
            for piece in window.cut(cap):
                counts.add(await self._window_or_halves(piece, advance))
            return counts
        try:
            return await self._window(window, advance)
        except BadRequest as exc:
            if exc.status != 400 or window.span <= _MIN_RANGE:
                raise
            size = max(_MIN_RANGE, window.span / 2)
            if size < cap:
                self.api.window_caps[self.endpoint] = size
                log.warning(
                    "window_cap_learned", endpoint=self.endpoint.value, window_days=size / _DAY,
                    reason=str(exc),
                )  # fmt: skip
            counts = BatchCounts()
            for piece in window.cut(size):
                counts.add(await self._window_or_halves(piece, advance))
            return counts
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
        """Read one window through the endpoint's form (CSV, or JSON pages after a fallback)."""
        endpoint = self.endpoint
        if self.api.formats.get(endpoint) is not ApiFormat.JSON:
            try:
                return await self._csv_window(window, advance)
            except CsvUnavailable as exc:
                if self.settings.cursor_api_format is not ApiFormat.AUTO:
                    raise
                self.api.formats[endpoint] = ApiFormat.JSON
                log.warning(
                    "json_fallback", endpoint=endpoint.value, reason=str(exc),
                    detail="reading the JSON pages for the rest of this process",
                )  # fmt: skip
        return await self._json_window(window, advance)

    async def _json_window(self, window: Window, advance: bool) -> BatchCounts:
        """Read one window from the JSON pages (explicit instants), a batch per page."""
        self.forms.add(ApiFormat.JSON.value)
        final = self._writer(raw=False)
        pages = read_json_window(
            self.api, self.endpoint, window.start, window.end, self.settings.cursor_json_page_size
        )
        seen = Seen() if self.prune else None
        try:
            async with aclosing(pages):
                async for rows in pages:
                    batch = Batch(self.endpoint)
                    batch.absorb(rows)
                    if seen is not None:
                        seen.add(batch)
                    await final.put(batch)
                    if self._stopping():
                        raise Interrupted(_STOPPED)
            counts = await final.finish(advance=advance)
        except Interrupted:
            # the batches in hand commit; the mark waits for a window read to its end
            await final.finish(advance=False)
            raise
        finally:
            await final.writer.abort()
        return await self._prune(Window(window.start, window.end), seen, counts)

    async def _csv_window(self, window: Window, advance: bool) -> BatchCounts:
        """Stream one window into batches; the last batch carries the new mark.

        Blocks of raw CSV records go to the server as they are (the raw path) when the header
        names only known columns and the block is plain CSV; otherwise they are parsed here,
        the typed way. Either way parsing or cutting the next block overlaps the write.
        """
        self.forms.add(ApiFormat.CSV.value)
        endpoint = self.endpoint
        raw = self.settings.sync_raw_path and not self.prune  # pruning needs keys
        final = self._writer(raw)
        block_bytes = max(_MIN_BLOCK, self.settings.sync_batch_rows * _ROW_BYTES)
        columns: list[str] | None = None
        header: bytes | None = None
        seen: Seen | None = None
        try:
            async with aclosing(
                self.api.stream_blocks(
                    endpoint, window.start, window.request_end, block_bytes=block_bytes
                )
            ) as blocks:
                async for block in blocks:
                    if block.header is not header:  # the first block, or a retried stream
                        header = block.header
                        columns = raw_columns(endpoint, block.names) if raw else None
                        seen = Seen() if self.prune else None  # a retry serves all again
                    item: Batch | RawBatch
                    if columns is not None and block.plain:
                        item = RawBatch(endpoint, columns, block, fresh=self._fresh)
                    else:
                        item = Batch.parse(endpoint, block)
                    if seen is not None:
                        seen.add(item)
                    await final.put(item, last=block.last)
                    if self._stopping():
                        raise Interrupted(_STOPPED)
            counts = await final.finish(advance=advance)
        except Interrupted:
            # the batches in hand commit; the mark waits for a window read to its end
            await final.finish(advance=False)
            raise
        finally:
            await final.writer.abort()
        return await self._prune(window, seen, counts)

    def _writer(self, raw: bool) -> FinalBatch:
        """A window's ordered writer, its first lane opening now with the staging tables of the
        raw or the typed path; wrapped so that the window's last batch carries the mark."""
        opener = partial(BatchWriter.open, self.store, stage=(raw, self.endpoint))
        writer = OrderedWriter(opener, self.run_id, self._batch_written)
        writer.start()
        return FinalBatch(writer, self.endpoint)

    async def _prune(self, window: Window, seen: Seen | None, counts: BatchCounts) -> BatchCounts:
        """A window was read to its clean end: stored rows it no longer holds may go."""
        if seen is not None:
            counts.deleted = await prune_window(
                self.api, self.store, self.settings, self.endpoint, window, seen, self._warnings
            )
            self._kept.deleted += counts.deleted  # what an interrupted pass reports it kept
        return counts

    def _batch_written(self, endpoint: Endpoint, counts: BatchCounts) -> None:
        self._kept.add(counts)
        self.progress.batch_written(endpoint, counts)


_STOPPED = "stopping: the pass ends at a batch boundary"

_DAY = timedelta(days=1)
_MAX_SPAN = MAX_WINDOW

#: A first load into empty tables over a longer range builds its indexes after the rows.
_SET_ASIDE_SPAN = timedelta(days=1)
#: The smallest raw block, and the bytes of a typical row (batch rows × this = block size).
_MIN_BLOCK = 16 * 1024
_ROW_BYTES = 256


async def _quietly(awaitable: Awaitable[T]) -> T | None:
    """Await a bookkeeping call; a database failure there is logged, not raised."""
    try:
        return await awaitable
    except SyncerError as exc:
        log.warning("bookkeeping_failed", error=str(exc))
        return None
