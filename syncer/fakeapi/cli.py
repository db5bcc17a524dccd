"""`syncer fake-api` flags and the serve-until-cancelled loop."""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import datetime

from syncer.fakeapi.config import REAL_MAX_RANGE_DAYS, FakeApiConfig
from syncer.fakeapi.dataset import privacy_fraction
from syncer.fakeapi.server import FakeApi
from syncer.timespec import parse_spec


def _privacy(text: str) -> str:
    try:
        privacy_fraction(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use off, all, or a fraction such as 0.3") from None
    return text


def _moment(text: str) -> datetime:
    try:
        return parse_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags to a (sub)command parser."""
    d = FakeApiConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on")
    add("--port", type=int, default=8001, help="port to listen on (0 picks a free one)")
    add("--api-key", default=d.api_key, help="the API key accepted as basic-auth user name")
    add("--seed", type=int, default=d.seed, help="seed of the generated data set")
    add("--commits", type=int, default=d.commits, help="commit rows of history")
    add("--changes", type=int, default=d.changes, help="AI-change rows of history")
    add("--days", type=float, default=d.days, help="days of history, ending at start-up")
    add("--anchor", type=_moment, default=None, help="end of the history (default: now)")
    add("--rate-limit-requests", type=int, default=d.rate_limit_requests,
        help="requests allowed per period, per endpoint")  # fmt: skip
    add("--rate-limit-period", type=float, default=d.rate_limit_period,
        help="rate-limit period in seconds")  # fmt: skip
    add("--privacy-mode", type=_privacy, default=d.privacy_mode,
        help="omit file names: off, all, or a fraction of users")  # fmt: skip
    add("--duplicate-rate", type=float, default=d.duplicate_rate,
        help="fraction of CSV rows served twice in a stream (last copy wins)")  # fmt: skip
    add("--live-rate", type=float, default=d.live_rate,
        help="new rows per minute per endpoint after start-up")  # fmt: skip
    add("--cache-mb", type=float, default=d.cache_mb, help="MB of rendered CSV blocks to cache")
    add("--order", choices=("desc", "asc"), default=d.order, help="row order by createdAt")
    add("--csv-page-rows", type=int, default=d.csv_page_rows,
        help="rows per server-side CSV page")  # fmt: skip
    add("--new-source-rate", type=float, default=d.new_source_rate,
        help="fraction of changes with a source the doc does not list (CLI, BACKGROUND_AGENT)",
    )  # fmt: skip
    _add_fault_arguments(parser)
    _add_real_api_arguments(parser)


def _add_real_api_arguments(parser: argparse.ArgumentParser) -> None:
    d = FakeApiConfig()
    add = parser.add_argument_group(
        "the real API", "what the API does beyond the first document (see the README)"
    ).add_argument
    add(
        "--no-commit-source",
        action="store_true",
        help="commits without commitSource / commit_source, as the first document has them",
    )
    add(
        "--max-range-days",
        type=float,
        default=REAL_MAX_RANGE_DAYS,
        help="longest startDate..endDate range answered, in days; longer gets 400 (0: any)",
    )
    add(
        "--error-shape",
        choices=("error", "code"),
        default=d.error_shape,
        help='error bodies as {"error","message"} or {"code":"error","message"}',
    )
    add(
        "--not-enterprise-key",
        default=d.not_enterprise_key,
        help="a key that authenticates but gets 401: the team is not on Enterprise",
    )
    add("--no-retry-after", action="store_true", help="429 answers without Retry-After")
    add("--max-page-size", type=int, default=d.max_page_size, help="largest pageSize answered")
    add(
        "--day-granularity",
        action="store_true",
        help="read ISO startDate/endDate values as the start of their UTC day",
    )
    add(
        "--csv-unavailable",
        choices=("404", "410", "html"),
        default=d.csv_unavailable,
        help="the CSV routes are not served (a status, or an HTML page with 200)",
    )
    add(
        "--amend-rate",
        type=float,
        default=d.amend_rate,
        help="fraction of rows served twice: an older copy and an amended, newer one",
    )
    add("--amend-order", choices=("newer-first", "older-first"), default=d.amend_order,
        help="which copy of an amended row comes first in the stream")  # fmt: skip


def _add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    d = FakeApiConfig()
    add = parser.add_argument_group("faults").add_argument
    add("--fail-every", type=int, default=d.fail_every, help="fail every Nth request (0: never)")
    add("--fail-status", type=int, default=d.fail_status, help="status of those failures")
    add("--cut-after-bytes", type=int, default=d.cut_after_bytes,
        help="abort CSV bodies after this many bytes")  # fmt: skip
    add("--cut-times", type=int, default=d.cut_times, help="how many CSV bodies to abort")
    add("--chunk-delay", type=float, default=d.chunk_delay, help="seconds between CSV chunks")
    add("--bom", action="store_true", help="start CSV bodies with a UTF-8 byte order mark")
    add("--crlf", action="store_true", help="end CSV lines with CRLF")
    add("--extra-column", choices=("append", "insert"), default=None,
        help="add an unknown CSV column (and an unknown metadata key)")  # fmt: skip
    add("--permute-columns", action="store_true", help="shuffle the CSV column order")
    add("--malformed-rate", type=float, default=d.malformed_rate,
        help="fraction of CSV rows rendered unparseable")  # fmt: skip
    add("--redirect-csv", choices=("same-host", "other-host"), default=None,
        help="answer CSV requests with 302 to a one-time download URL")  # fmt: skip


def config_from(args: argparse.Namespace) -> FakeApiConfig:
    """The config the parsed flags describe."""
    return FakeApiConfig(
        api_key=args.api_key, seed=args.seed, commits=args.commits, changes=args.changes,
        days=args.days, anchor=args.anchor, rate_limit_requests=args.rate_limit_requests,
        rate_limit_period=args.rate_limit_period, privacy_mode=args.privacy_mode,
        duplicate_rate=args.duplicate_rate, live_rate=args.live_rate, cache_mb=args.cache_mb,
        order=args.order, csv_page_rows=args.csv_page_rows, fail_every=args.fail_every,
        fail_status=args.fail_status, cut_after_bytes=args.cut_after_bytes,
        cut_times=args.cut_times, chunk_delay=args.chunk_delay, bom=args.bom, crlf=args.crlf,
        extra_column=args.extra_column, permute_columns=args.permute_columns,
        malformed_rate=args.malformed_rate, new_source_rate=args.new_source_rate,
        redirect_csv=args.redirect_csv, commit_source=not args.no_commit_source,
        max_range_days=args.max_range_days, error_shape=args.error_shape,
        not_enterprise_key=args.not_enterprise_key, no_retry_after=args.no_retry_after,
        max_page_size=args.max_page_size,
        day_granularity=args.day_granularity, csv_unavailable=args.csv_unavailable,
        amend_rate=args.amend_rate, amend_order=args.amend_order,
    )  # fmt: skip


async def run(args: argparse.Namespace) -> None:
    """Serve until cancelled or SIGTERM/SIGINT; print the URL and key once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # a container's PID 1 gets SIGTERM
        loop.add_signal_handler(signum, stop.set)
    try:
        async with FakeApi(config_from(args), host=args.host, port=args.port) as api:
            print(f"fake Cursor API on {api.url} (API key: {api.config.api_key})", flush=True)
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
