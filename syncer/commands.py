"""What `sync`, `backfill`, `status` and `demo` do, given Settings; the CLI only parses flags."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.exc import ProgrammingError

from syncer.client.api import CursorClient
from syncer.client.budget import PostgresBudget
from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.errors import ConfigError, DatabaseError, EndpointBusy
from syncer.results import NoProgress, Outcome, PassResult, Progress
from syncer.stopping import GracefulStop
from syncer.store.db import database_url, migrate
from syncer.store.ratebudget import RateBudgetTable
from syncer.store.schema import sync_runs, sync_state
from syncer.store.store import Store
from syncer.sync import Pass
from syncer.timespec import isoformat_z, parse_duration, parse_spec

log = structlog.get_logger(__name__)


@asynccontextmanager
async def open_resources(
    settings: Settings, stop: GracefulStop | None = None
) -> AsyncIterator[tuple[CursorClient, Store]]:
    """The API client and the migrated store a writing command needs (`stop` ends its waits)."""
    settings.require_api_key()
    async with Store.connect(database_url(settings)) as store:
        await migrate(store.engine)
        shared = RateBudgetTable(store)  # the rate budget, shared with other processes
        event, sleep = (stop.event, stop.sleep) if stop else (None, asyncio.sleep)
        async with (
            PostgresBudget.from_settings(shared, settings, stop=event) as budget,
            CursorClient(settings, budget=budget, sleep=sleep) as api,
        ):
            yield api, store


async def one_shot(passes: Callable[[GracefulStop], Awaitable[Sequence[PassResult]]]) -> int:
    """Run a one-shot command's passes with a graceful stop on SIGINT and SIGTERM.

    Stopped, it prints what each pass did and one line on stderr saying what was kept and how
    to resume, and returns 130 (SIGINT) or 143 (SIGTERM); otherwise it is `report`.
    """
    stop = GracefulStop()
    results = await stop.run(passes(stop))
    if stop.signal is None:
        assert results is not None  # only a second signal cancels the work
        return report(results)
    name = stop.signal.name
    if results is None:
        print(f"syncer: stopped at once by a second {name}: the batch in flight was rolled "
              "back, committed batches stay; run the same command again to resume",
              file=sys.stderr)  # fmt: skip
        return stop.exit_code
    if not any(r.outcome is Outcome.INTERRUPTED for r in results):
        report(results)  # the signal came once every pass had ended: nothing to resume
        return stop.exit_code
    print_results(results)
    kept = ", ".join(f"{r.endpoint.value} {r.counts.rows} rows" for r in results)
    print(f"syncer: interrupted by {name}: committed batches stay ({kept}); the high-water "
          "mark moved only past whole windows; run the same command again to resume",
          file=sys.stderr)  # fmt: skip
    return stop.exit_code


def report(results: Sequence[PassResult]) -> int:
    """Print one line per endpoint; raise the first failure so the CLI exits non-zero."""
    print_results(results)
    for r in results:
        if r.outcome is Outcome.FAILED and r.error is not None:
            raise r.error
    return 0


def print_results(results: Sequence[PassResult]) -> None:
    """One line per endpoint: its outcome, counts, windows, duration, mark and error."""
    for r in results:
        c = r.counts
        mark = isoformat_z(r.high_water_mark) if r.high_water_mark else "-"
        detail = (
            f"{c.inserted} inserted, {c.updated} updated, {c.unchanged} unchanged, "
            f"{c.rejected} rejected{f', {c.deleted} deleted' if c.deleted else ''} "
            f"in {r.windows} window(s), {r.duration:.1f}s; mark {mark}"
        )
        if r.outcome is Outcome.SKIPPED:
            detail = f"skipped: {r.error}"
        elif r.error is not None:
            detail = f"{detail}; error: {r.error}"
        print(f"{r.endpoint.value:<8} {r.outcome.value:<8} {detail}")
        for warning in r.warnings:
            print(f"{r.endpoint.value:<8} warning  {warning}")


async def sync_command(settings: Settings, progress: Progress | None = None) -> int:
    """One incremental pass of every endpoint, concurrently (each has its own rate budget)."""

    async def passes(stop: GracefulStop) -> list[PassResult]:
        async with open_resources(settings, stop) as (api, store):
            return await asyncio.gather(
                *(
                    Pass(api, store, settings, endpoint, "sync",
                         progress=progress or NoProgress(), stop=stop.event).run()
                    for endpoint in Endpoint
                )
            )  # fmt: skip

    return await one_shot(passes)


def parse_range(since: str, until: str, command: str = "backfill") -> tuple[datetime, datetime]:
    """Resolve backfill specs against one `now`; the range must not be empty."""
    now = datetime.now(timezone.utc)
    try:
        start, end = parse_spec(since, now), parse_spec(until, now)
    except ValueError as exc:
        raise ConfigError(f"{command}: {exc}") from None
    if start >= end:
        raise ConfigError(f"{command}: --since ({since}) must be before --until ({until})")
    return start, end


async def backfill_command(
    settings: Settings, since: str, until: str, endpoint: Endpoint | None
) -> int:
    """A one-shot historical load; waits for a concurrent pass of the same endpoint to finish."""
    from syncer.progress import ConsoleProgress

    start, end = parse_range(since, until)
    endpoints = [endpoint] if endpoint else list(Endpoint)

    async def passes(stop: GracefulStop) -> list[PassResult]:
        async with open_resources(settings, stop) as (api, store):
            with ConsoleProgress() as progress:
                return await asyncio.gather(
                    *(
                        Pass(
                            api,
                            store,
                            settings,
                            e,
                            "backfill",
                            since=start,
                            # `--until now` asks up to the API's own now (endDate=now), as a
                            # sync does
                            until=None if until.strip().lower() == "now" else end,
                            wait_for_lock=True,
                            progress=progress,
                            stop=stop.event,
                            prune=settings.sync_prune,
                        ).run()
                        for e in endpoints
                    )
                )

    return await one_shot(passes)


async def rebuild_indexes(store: Store) -> list[str]:
    """Rebuild the indexes a stopped first load left out, for each endpoint no live process
    is loading (one that is puts them back itself); the names rebuilt."""
    rebuilt: list[str] = []
    for endpoint in Endpoint:
        try:
            async with store.endpoint_lock(endpoint, wait=False) as held:
                rebuilt += await held.restore_indexes()
        except EndpointBusy:
            continue
    return rebuilt


@dataclass(slots=True)
class EndpointStatus:
    """What `syncer status` shows for one endpoint."""

    endpoint: str
    high_water_mark: datetime | None
    lag_seconds: float | None
    rows: int
    last_run: dict[str, Any] | None
    #: the form the endpoint was last read through: `csv`, `json` (`csv+json`: switched)
    api_format: str | None = None
    #: declared indexes absent: a first load builds them after its rows (or was killed)
    missing_indexes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form (ISO timestamps)."""

        def iso(v: Any) -> Any:
            return isoformat_z(v) if isinstance(v, datetime) else v

        return {
            "endpoint": self.endpoint,
            "high_water_mark": iso(self.high_water_mark),
            "lag_seconds": self.lag_seconds,
            "rows": self.rows,
            "last_run": {k: iso(v) for k, v in self.last_run.items()} if self.last_run else None,
            "api_format": self.api_format,
            "missing_indexes": self.missing_indexes,
        }


async def collect_status(store: Store) -> list[EndpointStatus]:
    """Mark, lag, row count and last finished run of every endpoint."""
    now = datetime.now(timezone.utc)
    out = []
    async with store.engine.connect() as conn:
        for endpoint in Endpoint:
            mark = (
                await conn.execute(
                    select(sync_state.c.high_water_mark).where(
                        sync_state.c.endpoint == endpoint.value
                    )
                )
            ).scalar_one_or_none()
            rows = (await conn.execute(text(f"SELECT count(*) FROM {endpoint.table}"))).scalar_one()
            run = (
                (
                    await conn.execute(
                        select(
                            sync_runs.c.run_id,
                            sync_runs.c.command,
                            sync_runs.c.started_at,
                            sync_runs.c.finished_at,
                            sync_runs.c.outcome,
                            sync_runs.c.windows,
                            sync_runs.c.rows_inserted,
                            sync_runs.c.rows_updated,
                            sync_runs.c.rows_unchanged,
                            sync_runs.c.rows_rejected,
                            sync_runs.c.error,
                        )
                        .where(sync_runs.c.endpoint == endpoint.value)
                        .where(sync_runs.c.outcome != Outcome.SKIPPED.value)
                        .order_by(sync_runs.c.started_at.desc(), sync_runs.c.id.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
            lag = (now - mark).total_seconds() if mark else None
            form = (
                await conn.execute(
                    select(sync_runs.c.api_format)
                    .where(sync_runs.c.endpoint == endpoint.value)
                    .where(sync_runs.c.api_format.is_not(None))
                    .order_by(sync_runs.c.started_at.desc(), sync_runs.c.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            last = dict(run) if run else None
            out.append(EndpointStatus(endpoint.value, mark, lag, int(rows), last, form))
    for status in out:
        status.missing_indexes = await store.missing_indexes(Endpoint(status.endpoint))
    return out


async def status_command(settings: Settings, *, as_json: bool) -> int:
    """Print the status table (or JSON); does not need an API key."""
    async with Store.connect(database_url(settings)) as store:
        try:
            statuses = await collect_status(store)
        except ProgrammingError:
            raise DatabaseError(
                "the database has no syncer tables yet: run `syncer migrate` first"
            ) from None
    if as_json:
        print(json.dumps([s.as_json() for s in statuses], indent=2))
    else:
        print_status_table(statuses)
    for s in statuses:
        if s.missing_indexes:
            print(
                f"warning: {s.endpoint}: indexes missing ({', '.join(s.missing_indexes)}): a "
                "first load builds them after its rows, or was stopped before it could; the "
                "next sync, backfill or migrate rebuilds them",
                file=sys.stderr,
            )
    return 0


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _short(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def _took(run: dict[str, Any]) -> str:
    start, end = run.get("started_at"), run.get("finished_at")
    if start is None:
        return "-"
    if end is None:
        return "running"
    return f"{(end - start).total_seconds():.1f}s"


def print_status_table(statuses: Sequence[EndpointStatus]) -> None:
    """The human form of `syncer status`."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="syncer status", title_justify="left")
    columns = ("endpoint", "form", "high-water mark", "behind", "rows", "last run", "took")
    for column in (*columns, "outcome"):
        table.add_column(column, no_wrap=True)
    table.add_column("ins/upd/same/rej", no_wrap=True)
    table.add_column("error")
    for s in statuses:
        run = s.last_run or {}
        counts = ("rows_inserted", "rows_updated", "rows_unchanged", "rows_rejected")
        table.add_row(
            s.endpoint,
            s.api_format or "-",
            _short(s.high_water_mark),
            _ago(s.lag_seconds),
            f"{s.rows:,}",
            f"{run['command']} {_short(run['started_at'])}" if run else "-",
            _took(run),
            run.get("outcome", "-"),
            "/".join(str(run[k]) for k in counts) if run else "-",
            (run.get("error") or "")[:200],
        )
    console = Console(file=sys.stdout)
    if not console.is_terminal:
        console = Console(file=sys.stdout, width=160)
    console.print(table)


async def verify_command(
    settings: Settings,
    *,
    since: str | None = None,
    until: str | None = None,
    endpoint: Endpoint | None = None,
    grain: str = "1d",
    repair: bool = False,
    prune: bool = False,
    as_json: bool = False,
) -> int:
    """`syncer verify`: 0 when every span matches, 3 when some differ (after any repair).

    SIGINT or SIGTERM stops it between requests: the spans checked so far are reported, what a
    repair committed stays, and it exits 130 or 143.
    """
    from syncer.verify import Scope, print_reports, verify_endpoints

    try:
        step = parse_duration(grain)
    except ValueError as exc:
        raise ConfigError(f"verify: --grain: {exc}") from None
    if step <= timedelta(0):
        raise ConfigError("verify: --grain must be a positive duration such as 1d or 6h")
    if prune and not repair:
        raise ConfigError("verify: --prune deletes only while repairing: add --repair")
    start, end = parse_range(since or settings.sync_start, until or "now", "verify")
    scope = Scope([endpoint] if endpoint else list(Endpoint), start, end, until is None, step,
                  repair)  # fmt: skip
    stop = GracefulStop()

    async def work() -> list[Any]:
        async with open_resources(settings, stop) as (api, store):

            def repair(e: Endpoint, since: datetime, until: datetime) -> Pass:
                return Pass(api, store, settings, e, "verify", since=since, until=until,
                            wait_for_lock=True, prune=prune, stop=stop.event)  # fmt: skip

            return await verify_endpoints(api, store, settings, scope, repair, stop.event)

    reports = await stop.run(work()) or []
    if as_json:
        print(json.dumps({"endpoints": {r.endpoint.value: r.as_json() for r in reports}}, indent=2))
    else:
        print_reports(reports)
    if stop.signal is not None:
        print(f"syncer: verify interrupted by {stop.signal.name}: the spans above were checked; "
              "repairs committed stay; run it again to go on", file=sys.stderr)  # fmt: skip
        return stop.exit_code
    return 3 if any(r.mismatches for r in reports) else 0
