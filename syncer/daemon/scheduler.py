"""`syncer run`: the daemon — one scheduled job per endpoint, health and metrics, graceful stop.

Life cycle. /healthz and /metrics answer at once (503 until passes succeed). The daemon then
reaches PostgreSQL and applies migrations, waiting with backoff while the database is down.
An `AsyncIOScheduler` wakes one job per endpoint every SYNC_INTERVAL: the first run at start,
a small jitter so many daemons do not hit the API in step, `max_instances=1` so a long pass
(a first 30-day load) is never doubled, `coalesce=True` so missed ticks become one run.

Failure policy. Nothing a pass raises stops the daemon. A failed pass is logged with what to
do and tried again after 1, 2, then 4 intervals at most (a failing API costs no budget, but
there is no point hammering it); the first success after failures is logged as a recovery.
Connection pools reconnect by themselves (`pool_pre_ping`, a fresh HTTP connection per
attempt), so a restarted PostgreSQL or API needs no restart of the daemon.

Shutdown. SIGTERM or SIGINT pauses the scheduler and sets the passes' stop event: a pass
commits the batch in hand and ends as interrupted at its next batch boundary, and one that
waits for the rate budget or a retry ends at once (it has sent nothing). Passes still
running after SYNC_SHUTDOWN_TIMEOUT are cancelled, which rolls their batch in flight back (the
next start re-reads it from the unchanged high-water mark); a second signal cancels at once.
Then the API session, the rate budget and the database pool close, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from contextlib import AsyncExitStack
from datetime import datetime, timedelta, timezone
from time import monotonic

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncEngine

from syncer.client.api import CursorClient
from syncer.client.budget import PostgresBudget
from syncer.config import Settings
from syncer.daemon.metrics import Metrics
from syncer.daemon.rescan import Rescans
from syncer.daemon.web import Health, build_app, serve
from syncer.endpoints import Endpoint
from syncer.errors import (
    ApiUnreachable,
    AuthError,
    BadRequest,
    ConfigError,
    DatabaseError,
    DatabaseFull,
    DatabaseReadOnly,
    DataError,
    Interrupted,
    RateLimited,
    ServerError,
    StreamInterrupted,
    SyncerError,
)
from syncer.results import Outcome, PassResult
from syncer.store.db import create_engine, database_url, migrate, reason, redact
from syncer.store.ratebudget import RateBudgetTable
from syncer.store.store import Store
from syncer.sync import Pass

log = structlog.get_logger(__name__)

#: A failing endpoint is retried after 1, 2, 4, 4, … intervals.
MAX_BACKOFF_INTERVALS = 4
#: Longest wait between attempts to reach the database at start-up, in seconds.
MAX_STARTUP_BACKOFF = 30.0
#: Seconds cancelled passes get to roll back and write their run-log row.
CANCEL_GRACE = 5.0

_HINTS: tuple[tuple[type[SyncerError] | tuple[type[SyncerError], ...], str], ...] = (
    (AuthError, "the API refused the key: set a valid CURSOR_API_KEY (an enterprise team's "
     "Admin API key) and restart syncer"),
    (RateLimited, "the team's rate budget is spent: another client may be using the same key "
     "outside syncer; lower its rate or CURSOR_RATE_LIMIT_REQUESTS"),
    ((ApiUnreachable, ServerError, StreamInterrupted),
     "the Cursor API is down or unreachable: check CURSOR_API_BASE_URL and the network; "
     "syncer retries by itself"),
    (DatabaseReadOnly, "PostgreSQL takes no writes (a read-only database, or a standby after a "
     "failover): point DATABASE_URL at the primary, or make the database writable; syncer "
     "retries by itself and loses nothing"),
    (DatabaseFull, "PostgreSQL's disk is full: free space on the database server (or its "
     "tablespace); syncer retries by itself and loses nothing"),
    (DatabaseError, "PostgreSQL is unreachable or failing: check DATABASE_URL and the server; "
     "syncer retries by itself"),
    (BadRequest, "the API rejected the request: check SYNC_START and SYNC_WINDOW"),
    (DataError, "the API sent something syncer cannot read; if it persists, report it with "
     "this line"),
)  # fmt: skip


def hint_for(error: BaseException | None) -> str:
    """What an operator should do about a failed pass."""
    for kinds, hint in _HINTS:
        if isinstance(error, kinds):
            return hint
    return "unexpected: syncer retries by itself; if it persists, report it with this line"


def backoff(interval: timedelta, failures: int) -> timedelta:
    """Delay before the next pass of an endpoint after `failures` consecutive failed ones."""
    factor: int = min(2 ** max(failures - 1, 0), MAX_BACKOFF_INTERVALS)
    return interval * factor


def jitter_seconds(interval: timedelta) -> float:
    """At most a tenth of the interval, and never more than 30 s."""
    return min(interval.total_seconds() / 10, 30.0)


class Daemon:
    """The long-running process of `syncer run`; `await Daemon(settings).run()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.health = Health(settings.sync_interval * settings.sync_healthy_intervals)
        self._stop = asyncio.Event()
        self._running: set[asyncio.Task[object]] = set()
        self._scheduler: AsyncIOScheduler | None = None
        #: An error that retrying cannot fix, seen before any success: `syncer run` exits with it.
        self.fatal: SyncerError | None = None

    def request_stop(self, reason: str) -> None:
        """Begin a graceful shutdown; asked twice, cancel the passes in flight at once."""
        if self._stop.is_set():
            log.warning("daemon_stopping_now", reason=reason, passes_cancelled=len(self._running))
            for task in self._running:
                task.cancel()
            return
        log.info("daemon_stopping", reason=reason)
        self._stop.set()

    async def run(self) -> None:
        """Serve health and metrics, migrate, schedule the passes; return once stopped."""
        s = self.settings
        async with AsyncExitStack() as stack:
            if s.sync_http_port:
                app = build_app(self.health, self.metrics)
                try:
                    port = await stack.enter_async_context(
                        serve(app, s.sync_http_host, s.sync_http_port)
                    )
                except OSError as exc:
                    raise ConfigError(
                        f"cannot serve /healthz and /metrics on {s.sync_http_host}:"
                        f"{s.sync_http_port}: {exc.strerror or exc}; set SYNC_HTTP_PORT to a "
                        "free port (0 turns them off)"
                    ) from None
                log.info("http_listening", host=s.sync_http_host, port=port,
                         paths=["/healthz", "/metrics"])  # fmt: skip
            url = database_url(s)
            engine = create_engine(url)
            stack.push_async_callback(engine.dispose)
            if not await self._migrate(engine, redact(url)):
                return
            store = Store(engine)
            budget = await stack.enter_async_context(
                PostgresBudget.from_settings(RateBudgetTable(store), s, stop=self._stop)
            )
            api = await stack.enter_async_context(
                CursorClient(s, budget=budget, observer=self.metrics, sleep=self._retry_sleep)
            )
            await self._load_marks(store)
            self._scheduler = self._schedule(api, store)
            try:
                await self._stop.wait()
            finally:
                await self._drain(self._scheduler)

    async def _migrate(self, engine: AsyncEngine, where: str) -> bool:
        """Apply migrations, waiting with backoff while the database is down; False if stopped."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                before, after = await migrate(engine)
            except Exception as exc:  # noqa: BLE001 - any driver error: the database is not there yet
                log.warning(
                    "database_unavailable", database=where, error=reason(exc),
                    retry_in_seconds=delay,
                    hint="check DATABASE_URL and that PostgreSQL is up; syncer keeps trying",
                )  # fmt: skip
                await self._sleep(delay)
                delay = min(delay * 2, MAX_STARTUP_BACKOFF)
                continue
            log.info("database_ready", database=where, revision=after,
                     migrated_from=before if before != after else None)  # fmt: skip
            return True
        return False

    async def _load_marks(self, store: Store) -> None:
        """Show the stored high-water marks before the first passes end."""
        for endpoint in Endpoint:
            try:
                mark = await store.high_water_mark(endpoint)
            except SyncerError:
                return  # the passes will report it
            if mark is not None:
                self.health.mark_known(endpoint, mark)
                self.metrics.mark_known(endpoint, mark)

    def _schedule(self, api: CursorClient, store: Store) -> AsyncIOScheduler:
        """One interval job per endpoint, the first run now."""
        interval = self.settings.sync_interval
        scheduler = AsyncIOScheduler(timezone=timezone.utc)
        scheduler.add_listener(self._still_running, EVENT_JOB_MAX_INSTANCES)
        now = datetime.now(timezone.utc)
        for endpoint in Endpoint:
            scheduler.add_job(
                self._job,
                IntervalTrigger(
                    seconds=interval.total_seconds(), jitter=jitter_seconds(interval),
                    timezone=timezone.utc,
                ),
                args=(endpoint, api, store),
                id=endpoint.value,
                name=f"sync {endpoint.value}",
                next_run_time=now,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )  # fmt: skip

        def make_rescan(endpoint: Endpoint, since: datetime, until: datetime) -> Pass:
            return Pass(api, store, self.settings, endpoint, "rescan", since=since, until=until,
                        wait_for_lock=True, prune=self.settings.sync_prune,
                        progress=self.metrics, stop=self._stop)  # fmt: skip

        rescans = Rescans(self.settings, self.metrics, self._stop, self._running, make_rescan)
        rescans.schedule(scheduler, store, now)
        scheduler.start()
        log.info(
            "daemon_started", endpoints=[e.value for e in Endpoint],
            interval_seconds=interval.total_seconds(),
            healthy_within_seconds=self.health.max_age.total_seconds(),
            rate_limit=f"{self.settings.cursor_rate_limit_requests} per "
            f"{self.settings.cursor_rate_limit_period_seconds:g}s per endpoint",
            api=self.settings.cursor_api_base_url,
        )  # fmt: skip
        return scheduler

    async def _job(self, endpoint: Endpoint, api: CursorClient, store: Store) -> None:
        """One scheduled pass of `endpoint`; never raises, so the daemon outlives any pass."""
        if self._stop.is_set():
            return
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        self.health.started(endpoint)
        sync = Pass(api, store, self.settings, endpoint, "run", progress=self.metrics,
                    stop=self._stop)  # fmt: skip
        started = monotonic()
        try:
            result = await sync.run()
        except asyncio.CancelledError:
            # Cancelled after the shutdown timeout or by a second signal: the pass rolled its
            # batch back and logged its run row. This task is the job's own top level (the
            # scheduler would log the cancellation as a crash), so ending it normally loses nothing.
            result = PassResult(endpoint, sync.run_id, Outcome.INTERRUPTED)
        except Exception as exc:  # a bug must not take the daemon down with it
            log.exception("pass_crashed", endpoint=endpoint.value, run_id=sync.run_id)
            error = SyncerError(f"unexpected {type(exc).__name__}: {exc}")
            result = PassResult(endpoint, sync.run_id, Outcome.FAILED, error=error)
        finally:
            if task is not None:
                self._running.discard(task)
        if not result.duration:
            result.duration = monotonic() - started
        self._record(result)

    def _record(self, result: PassResult) -> None:
        """Feed metrics and health; on failure, log what to do and push the next try back."""
        endpoint = result.endpoint
        failures_before = self.health.endpoints[endpoint].consecutive_failures
        self.metrics.pass_finished(result, datetime.now(timezone.utc))
        state = self.health.finished(result)
        if (
            result.outcome is Outcome.FAILED
            and isinstance(result.error, AuthError)
            and state.last_success is None
        ):
            # A key refused from the start is a configuration error: exit non-zero with it
            # (a key revoked later keeps the daemon up, unhealthy, until it is fixed).
            self.fatal = result.error
            self.request_stop("the API refused the key")
            return
        if result.outcome is Outcome.FAILED:
            delay = backoff(self.settings.sync_interval, state.consecutive_failures)
            self._postpone(endpoint, delay)
            log.warning(
                "pass_will_retry", endpoint=endpoint.value, run_id=result.run_id,
                error=str(result.error), failures=state.consecutive_failures,
                retry_in_seconds=delay.total_seconds(), hint=hint_for(result.error),
            )  # fmt: skip
        elif result.outcome is Outcome.INTERRUPTED:
            log.info(
                "pass_interrupted", endpoint=endpoint.value, run_id=result.run_id,
                hint="committed batches stay; the next pass re-reads from the mark",
            )  # fmt: skip
        elif result.outcome is Outcome.SUCCESS and failures_before:
            log.info("endpoint_recovered", endpoint=endpoint.value, run_id=result.run_id,
                     after_failures=failures_before)  # fmt: skip

    def _postpone(self, endpoint: Endpoint, delay: timedelta) -> None:
        if self._scheduler is not None and not self._stop.is_set():
            when = datetime.now(timezone.utc) + delay
            self._scheduler.modify_job(endpoint.value, next_run_time=when)

    def _still_running(self, event: JobEvent) -> None:
        log.debug("pass_still_running", endpoint=event.job_id)

    async def _drain(self, scheduler: AsyncIOScheduler) -> None:
        """Stop scheduling, let passes stop at a batch boundary, cancel the late ones."""
        scheduler.pause()
        self._stop.set()
        timeout = self.settings.sync_shutdown_timeout.total_seconds()
        if running := set(self._running):
            log.info("daemon_draining", passes=len(running), timeout_seconds=timeout)
            _, late = await asyncio.wait(running, timeout=timeout)
            if late:
                log.warning(
                    "shutdown_timeout", passes_cancelled=len(late),
                    hint="their batch in flight rolls back; the next start re-reads it",
                )  # fmt: skip
                for task in late:
                    task.cancel()
                await asyncio.wait(late, timeout=CANCEL_GRACE)
        scheduler.shutdown(wait=False)

    async def _retry_sleep(self, seconds: float) -> None:
        """The client's pause between retries; a shutdown ends it (nothing is in flight)."""
        await self._sleep(seconds)
        if self._stop.is_set():
            raise Interrupted("stopping: the retry was not sent")

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when a stop is requested."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)


async def run_daemon(settings: Settings) -> int:
    """`syncer run`: run until SIGTERM or SIGINT, then shut down cleanly and return 0.

    A key the API refuses before any pass succeeded ends the daemon with that error.
    """
    settings.require_api_key()
    daemon = Daemon(settings)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, daemon.request_stop, sig.name)
    try:
        await daemon.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("daemon_stopped")
    if daemon.fatal is not None:
        raise daemon.fatal
    return 0
