"""`syncer verify`: the API's own counts against the stored rows, span by span, halving to a grain.

Each span of the range costs one cheap request (the JSON pages' `totalCount` at `pageSize=1`)
and one `count(*)`. A span whose counts agree is done. One that differs is cut in two at a grain
boundary near its middle; only the left half is counted (the right one's count is the parent's
minus the left's), so a differing day in 90 costs about log2(30) requests, not 90. A span of at
most one grain whose counts still differ is read (one CSV request) and its keys compared with
the stored keys: the API may count an amended commit twice, so only differing keys make a
mismatch. With `--repair` such a span is first re-read through the normal pass (upserts, and
deletions with `--prune`), then counted again.

What counts cannot show: a row changed in place (same count), or a missing row and an extra
one in the same span. Scheduled rescans re-read recent spans in full for that.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from syncer.client.api import CursorClient
from syncer.client.counts import MS, count_rows, floor_ms
from syncer.client.paging import read_json_window
from syncer.config import ApiFormat, Settings
from syncer.endpoints import Endpoint
from syncer.errors import CsvUnavailable, Interrupted
from syncer.parse.parser import parse_block
from syncer.parse.rows import Rejected, Row
from syncer.results import Outcome, PassResult
from syncer.store.spans import count_stored, stored_keys
from syncer.store.store import Store
from syncer.timespec import format_duration, isoformat_z

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: keys of each kind listed per mismatch (the counts say how many there are in all)
SAMPLE_KEYS = 20


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open span `[start, end)` of `created_at`, both ends whole milliseconds."""

    start: datetime
    end: datetime

    @property
    def last(self) -> datetime:
        """The span's last instant, the API's inclusive `endDate`."""
        return self.end - MS

    def halves(self, grain: timedelta) -> tuple[Span, Span] | None:
        """The span cut at the grain boundary nearest its middle; None if it has none inside."""
        middle = self.start + (self.end - self.start) / 2
        below = align(middle, grain)
        for cut in sorted((below, below + grain), key=lambda c: abs(c - middle)):
            if self.start < cut < self.end:
                return Span(self.start, cut), Span(cut, self.end)
        return None

    def __str__(self) -> str:
        return f"{isoformat_z(self.start)}..{isoformat_z(self.end)}"


def align(moment: datetime, grain: timedelta) -> datetime:
    """The grain boundary at or before `moment` (grains counted from the Unix epoch)."""
    return EPOCH + ((moment - EPOCH) // grain) * grain


def plan_spans(start: datetime, end: datetime, longest: timedelta, grain: timedelta) -> list[Span]:
    """Cut `[start, end)` into spans of at most `longest`, cut on grain boundaries."""
    spans, cursor = [], floor_ms(start)
    end = floor_ms(end)
    while cursor < end:
        stop = align(cursor + longest, grain)
        stop = min(stop if stop > cursor else cursor + longest, end)
        spans.append(Span(cursor, stop))
        cursor = stop
    return spans


def halvings(longest: timedelta, grain: timedelta) -> int:
    """Count requests to narrow one differing span of `longest` down to one grain."""
    steps, span = 0, longest
    while span > grain:
        span, steps = span / 2, steps + 1
    return steps


@dataclass(slots=True)
class Mismatch:
    """A span of at most the grain whose stored rows differ from what the API serves."""

    span: Span
    api: int
    stored: int
    missing: list[str] = field(default_factory=list)  #: keys served, not stored
    unexpected: list[str] = field(default_factory=list)  #: keys stored, not served
    rejected: int = 0  #: records served that could not be read (their keys unknown)

    def as_json(self) -> dict[str, Any]:
        """The contract's mismatch object, plus the keys found."""
        return {
            "start": isoformat_z(self.span.start),
            "end": isoformat_z(self.span.end),
            "api": self.api,
            "stored": self.stored,
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
            "rejected": self.rejected,
            "missing_keys": sorted(self.missing)[:SAMPLE_KEYS],
            "unexpected_keys": sorted(self.unexpected)[:SAMPLE_KEYS],
        }


@dataclass(slots=True)
class EndpointReport:
    """What verifying one endpoint found."""

    endpoint: Endpoint
    start: datetime
    end: datetime
    spans_checked: int = 0
    requests: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    repaired: list[Span] = field(default_factory=list)
    deleted: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The endpoint's part of `syncer verify --json`."""
        return {
            "start": isoformat_z(self.start),
            "end": isoformat_z(self.end),
            "spans_checked": self.spans_checked,
            "requests": self.requests,
            "mismatches": [m.as_json() for m in self.mismatches],
            "repaired": [
                {"start": isoformat_z(s.start), "end": isoformat_z(s.end)} for s in self.repaired
            ],  # fmt: skip
            "deleted": self.deleted,
            "warnings": self.warnings,
        }


Say = Callable[[str], None]


class Repair(Protocol):
    """A pass of one endpoint over a span (`syncer.sync.Pass`, command `verify`)."""

    async def run(self) -> PassResult:
        """Re-read the span; never raises SyncerError."""
        ...


#: Builds the repair pass of an endpoint over [since, until] (the command's API, store, stop).
MakeRepair = Callable[[Endpoint, datetime, datetime], Repair]


def say_on_stderr(line: str) -> None:
    """Progress goes to stderr, so `--json` output stays clean on stdout."""
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Scope:
    """What to verify: endpoints, a range, the grain, and whether to repair differing spans."""

    endpoints: list[Endpoint]
    start: datetime
    end: datetime
    to_mark: bool  #: end each endpoint's range at its high-water mark (no --until given)
    grain: timedelta
    repair: bool = False


async def verify_endpoints(
    api: CursorClient,
    store: Store,
    settings: Settings,
    scope: Scope,
    make_repair: MakeRepair,
    stop: asyncio.Event | None = None,
    say: Say = say_on_stderr,
) -> list[EndpointReport]:
    """Verify each endpoint of the scope in turn; stopped, return what was checked so far."""
    ranges = {}
    for endpoint in scope.endpoints:
        mark = await store.high_water_mark(endpoint) if scope.to_mark else None
        # By default up to the mark: rows past it are not synced yet, by design.
        ranges[endpoint] = (scope.start, min(scope.end, mark + MS) if mark else scope.end)
        say("verify " + plan_note(endpoint, *ranges[endpoint], settings, scope.grain))
    reports = []
    for endpoint, (first, last) in ranges.items():
        if first >= last:
            say(f"verify {endpoint.value}: nothing to check before its high-water mark")
            continue
        verifier = Verifier(api, store, settings, endpoint, scope.grain, say,
                            make_repair if scope.repair else None, stop)  # fmt: skip
        try:
            await verifier.run(first, last)
        except Interrupted:
            reports.append(verifier.report)
            break
        reports.append(verifier.report)
    return reports


@dataclass
class Verifier:
    """Verifies (and with `repair`, repairs) one endpoint over a range."""

    api: CursorClient
    store: Store
    settings: Settings
    endpoint: Endpoint
    grain: timedelta
    say: Say
    make_repair: MakeRepair | None = None  #: re-read differing spans with these passes
    stop: asyncio.Event | None = None  #: set: end before the next request (`Interrupted`)
    report: EndpointReport = field(init=False)  #: what was found, so far when interrupted

    async def run(self, start: datetime, end: datetime) -> EndpointReport:
        """Check every span of `[start, end)`, narrowing differing ones down to the grain."""
        report = self.report = EndpointReport(self.endpoint, start, end)
        before = self.api.requests(self.endpoint)
        try:
            for span in plan_spans(start, end, self.settings.sync_window, self.grain):
                await self._check(report, span, await self._count(span))
        finally:
            report.requests = self.api.requests(self.endpoint) - before
        return report

    async def _count(self, span: Span) -> int:
        if self.stop is not None and self.stop.is_set():
            raise Interrupted("stopping: verify sends no further request")
        return await count_rows(self.api, self.endpoint, span.start, span.end)

    async def _check(self, report: EndpointReport, span: Span, api: int) -> None:
        stored = await count_stored(self.store, self.endpoint, span.start, span.end)
        report.spans_checked += 1
        halves = None if api == stored else span.halves(self.grain)
        verdict = "ok" if api == stored else "differs, halving" if halves else "differs"
        self.say(f"{self.endpoint.value:<8} {span}  api {api:>7}  stored {stored:>7}  {verdict}")
        if api == stored:
            return
        if halves is None:
            await self._leaf(report, span, api, stored)
            return
        left, right = halves
        left_api = await self._count(left)
        await self._check(report, left, left_api)
        await self._check(report, right, api - left_api)

    async def _leaf(self, report: EndpointReport, span: Span, api: int, stored: int) -> None:
        """A span of at most the grain whose counts differ: repair it, or compare its keys."""
        if self.make_repair is not None:
            await self._repair(report, span, self.make_repair)
            api = await self._count(span)
            stored = await count_stored(self.store, self.endpoint, span.start, span.end)
            self.say(f"{self.endpoint.value:<8} {span}  api {api:>7}  stored {stored:>7}  "
                     f"{'repaired' if api == stored else 'still differs'}")  # fmt: skip
            if api == stored:
                report.repaired.append(span)
                return
        served, rejected = await self._served_keys(span)
        held = await stored_keys(self.store, self.endpoint, span.start, span.end)
        if served == held and not rejected:
            self.say(f"{self.endpoint.value:<8} {span}  same keys (the API counts some twice)")
            if self.make_repair is not None:
                report.repaired.append(span)
            return
        report.mismatches.append(
            Mismatch(span, api, stored, sorted(served - held), sorted(held - served), rejected)
        )

    async def _served_keys(self, span: Span) -> tuple[set[str], int]:
        """Keys of the rows the API serves for the span, and how many could not be read.

        One CSV request, or the JSON pages where the endpoint is read through them.
        """
        if self.api.formats.get(self.endpoint) is not ApiFormat.JSON:
            try:
                return await self._csv_keys(span)
            except CsvUnavailable:
                if self.settings.cursor_api_format is not ApiFormat.AUTO:
                    raise
                self.api.formats[self.endpoint] = ApiFormat.JSON
        keys: set[str] = set()
        rejected = 0
        size = self.settings.cursor_json_page_size
        pages = read_json_window(self.api, self.endpoint, span.start, span.last, size)
        async with aclosing(pages) as stream:
            async for rows in stream:
                rejected += _absorb_keys(keys, rows)
        return keys, rejected

    async def _csv_keys(self, span: Span) -> tuple[set[str], int]:
        keys: set[str] = set()
        rejected = 0
        header: bytes | None = None
        blocks = self.api.stream_blocks(self.endpoint, span.start, span.last)
        async with aclosing(blocks) as stream:
            async for block in stream:
                if block.header is not header:  # the first block, or a retried response
                    header, keys, rejected = block.header, set(), 0
                rejected += _absorb_keys(keys, parse_block(self.endpoint, block))
        return keys, rejected

    async def _repair(self, report: EndpointReport, span: Span, make: MakeRepair) -> None:
        """Re-read the span through the normal pass: upserts, and deletions with `--prune`."""
        result = await make(self.endpoint, span.start, span.last).run()
        report.deleted += result.counts.deleted
        report.warnings.extend(result.warnings)
        if result.outcome is Outcome.INTERRUPTED:
            raise Interrupted("stopping: the repair kept what it committed")
        if result.outcome is not Outcome.SUCCESS and result.error is not None:
            raise result.error


def plan_note(
    endpoint: Endpoint, start: datetime, end: datetime, settings: Settings, grain: timedelta
) -> str:
    """What verifying an endpoint will cost, said before it starts."""
    spans = len(plan_spans(start, end, settings.sync_window, grain))
    more = halvings(settings.sync_window, grain) + 1
    requests, period = settings.rate_limit
    return (
        f"{endpoint.value:<8} {isoformat_z(start)}..{isoformat_z(end)}: {spans} span(s), "
        f"{spans} request(s) if all match, up to {more} more per differing span "
        f"(halved down to {format_duration(grain)}); "
        f"the API allows {requests} per {period:g}s per endpoint"
    )


def print_reports(reports: list[EndpointReport]) -> None:
    """The human form: one table of differing spans per endpoint, or that all match."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 140)
    for report in reports:
        name = report.endpoint.value
        head = f"{name}: {report.spans_checked} span(s) checked, {report.requests} request(s)"
        if report.repaired:
            head += f", {len(report.repaired)} repaired, {report.deleted} row(s) deleted"
        if not report.mismatches:
            console.print(f"{head}; every span matches")
        else:
            table = Table(title=f"{head}; {len(report.mismatches)} span(s) differ",
                          title_justify="left")  # fmt: skip
            for column in ("span", "API", "stored", "difference", "missing", "unexpected"):
                table.add_column(column, no_wrap=True)
            for m in report.mismatches:
                table.add_row(str(m.span), str(m.api), str(m.stored), f"{m.stored - m.api:+d}",
                              str(len(m.missing)), str(len(m.unexpected)))  # fmt: skip
            console.print(table)
        for warning in report.warnings:
            console.print(f"{name}: warning: {warning}")


def _absorb_keys(keys: set[str], items: list[Row | Rejected]) -> int:
    """Add the rows' keys to `keys`; return how many items could not be read."""
    rejected = 0
    for item in items:
        if isinstance(item, Rejected):
            rejected += 1
        else:
            keys.add(item[0])
    return rejected
