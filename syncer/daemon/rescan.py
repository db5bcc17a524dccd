"""Scheduled rescans: once per SYNC_RESCAN_INTERVAL, re-read an endpoint's last SYNC_RESCAN_SPAN.

The span ends at the high-water mark: rows past it are the incremental passes' to read, and
counting them would pass new rows off as drift.

An incremental pass reads from the high-water mark minus SYNC_LOOKBACK, so a row the API adds
or changes further back (late ingestion; a range filtered on another timestamp than ours) is
never seen by it. A rescan reads the whole span again through the normal windows and upserts,
holding the endpoint's lock (an incremental pass that finds it busy is skipped, and runs at its
next interval), and with SYNC_PRUNE=true deletes what the API withdrew. It never moves the mark
backwards (the mark only moves forward) and costs one request per window (7 days: one, plus one
count when pruning), so it cannot starve the incremental passes of the rate budget.

Rows a rescan inserts, updates or deletes are drift the incremental passes missed:
`syncer_rescan_rows_total{endpoint,result}` counts them, and a warning names them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncer.config import Settings
from syncer.daemon.metrics import Metrics
from syncer.endpoints import Endpoint
from syncer.errors import SyncerError
from syncer.results import Outcome, PassResult
from syncer.store.store import Store

log = structlog.get_logger(__name__)


class Rescan(Protocol):
    """A pass of one endpoint over a span (`syncer.sync.Pass`, command `rescan`)."""

    run_id: str

    async def run(self) -> PassResult:
        """Read the span; never raises SyncerError."""
        ...


#: Builds the rescan pass of an endpoint over [since, until] (the daemon's API, store and stop).
MakeRescan = Callable[[Endpoint, datetime, datetime], Rescan]


class Rescans:
    """The rescan job of each endpoint, spread over the interval so they never coincide."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        stop: asyncio.Event,
        running: set[asyncio.Task[object]],
        make_rescan: MakeRescan,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._stop = stop
        self._running = running
        self._make_rescan = make_rescan

    def schedule(self, scheduler: AsyncIOScheduler, store: Store, now: datetime) -> None:
        """Add one job per endpoint: the first an interval after `now`, the next offset."""
        interval = self.settings.sync_rescan_interval
        if interval <= timedelta(0):
            return
        endpoints = list(Endpoint)
        for index, endpoint in enumerate(endpoints):
            first = now + interval + interval * index / len(endpoints)
            scheduler.add_job(
                self.run, IntervalTrigger(seconds=interval.total_seconds(), start_date=first,
                                          timezone=timezone.utc),
                args=(endpoint, store), id=f"rescan-{endpoint.value}",
                name=f"rescan {endpoint.value}", next_run_time=first, max_instances=1,
                coalesce=True, misfire_grace_time=None,
            )  # fmt: skip
        log.info("rescans_scheduled", interval_seconds=interval.total_seconds(),
                 span_seconds=self.settings.sync_rescan_span.total_seconds(),
                 prune=self.settings.sync_prune)  # fmt: skip

    async def run(self, endpoint: Endpoint, store: Store) -> PassResult:
        """One rescan of `endpoint`; never raises, so the daemon outlives it."""
        since = datetime.now(timezone.utc) - self.settings.sync_rescan_span
        run_id = "-"
        if self._stop.is_set():
            return PassResult(endpoint, run_id, Outcome.SKIPPED)
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            # Up to the mark only: what lies past it is the incremental passes' (not drift).
            until = await store.high_water_mark(endpoint)
            if until is None or until <= since:
                return PassResult(endpoint, run_id, Outcome.SKIPPED)
            rescan = self._make_rescan(endpoint, since, until)
            run_id = rescan.run_id
            result = await rescan.run()
        except asyncio.CancelledError:
            result = PassResult(endpoint, run_id, Outcome.INTERRUPTED)
        except SyncerError as exc:  # reading the mark failed
            result = PassResult(endpoint, run_id, Outcome.FAILED, error=exc)
        except Exception as exc:  # a bug must not take the daemon down with it
            log.exception("rescan_crashed", endpoint=endpoint.value, run_id=run_id)
            error = SyncerError(f"unexpected {type(exc).__name__}: {exc}")
            result = PassResult(endpoint, run_id, Outcome.FAILED, error=error)
        finally:
            if task is not None:
                self._running.discard(task)
        self._record(result)
        return result

    def _record(self, result: PassResult) -> None:
        self.metrics.rescan_finished(result)
        c, name = result.counts, result.endpoint.value
        for warning in result.warnings:
            log.error("rescan_warning", endpoint=name, run_id=result.run_id, warning=warning)
        if result.outcome is not Outcome.SUCCESS:
            log.warning("rescan_not_done", endpoint=name, run_id=result.run_id,
                        outcome=result.outcome.value, error=str(result.error or ""),
                        hint="the next rescan reads the span again")  # fmt: skip
        elif c.inserted or c.updated or c.deleted:
            log.warning("rescan_drift", endpoint=name, run_id=result.run_id,
                        inserted=c.inserted, updated=c.updated, deleted=c.deleted,
                        hint="rows the incremental passes missed; if this recurs, raise "
                        "SYNC_LOOKBACK or shorten SYNC_RESCAN_INTERVAL")  # fmt: skip
