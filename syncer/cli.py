"""The `syncer` command: parse flags, build resources, run, and map errors to exit codes."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from syncer import __version__
from syncer.config import Settings, load_settings
from syncer.endpoints import Endpoint
from syncer.errors import ConfigError, SyncerError

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


async def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.commands import rebuild_indexes
    from syncer.store.db import create_engine, database_url, migrate, redact, to_libpq_url
    from syncer.store.store import Store

    url = database_url(settings)
    engine = create_engine(url)
    try:
        before, after = await migrate(engine)
        rebuilt = await rebuild_indexes(Store(engine))
    finally:
        await engine.dispose()
    state = "already at" if before == after else f"migrated from {before or 'empty'} to"
    print(f"{redact(to_libpq_url(url))}: {state} revision {after}")
    if rebuilt:
        print(f"rebuilt the indexes a stopped first load left out: {', '.join(rebuilt)}")
    return 0


async def _sync(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.commands import sync_command

    return await sync_command(settings)


async def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.commands import backfill_command

    return await backfill_command(settings, args.since, args.until, args.endpoint)


async def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.commands import verify_command

    return await verify_command(
        settings, since=args.since, until=args.until, endpoint=args.endpoint, grain=args.grain,
        repair=args.repair, prune=args.prune, as_json=args.json,
    )  # fmt: skip


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.commands import status_command

    return await status_command(settings, as_json=args.json)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.daemon.scheduler import run_daemon

    return await run_daemon(settings)


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.demo import demo_command

    return await demo_command(settings)


async def _grant_read(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.bi.commands import grant_read_command

    return await grant_read_command(settings, args.role)


async def _report(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.bi.commands import report_command

    return await report_command(settings, args.since, args.out)


async def _fake_api(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.fakeapi.cli import run

    await run(args)
    return 0


def _endpoint(value: str) -> Endpoint:
    try:
        return Endpoint(value)
    except ValueError:
        raise argparse.ArgumentTypeError("choose commits or changes") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per contract command."""
    parser = argparse.ArgumentParser(
        prog="syncer",
        description="Sync Cursor's AI code tracking analytics into PostgreSQL.",
        epilog="Configuration comes from environment variables and .env (see README).",
    )
    parser.add_argument("--version", action="version", version=f"syncer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    add("run", _run, "run the daemon: migrate, then sync every endpoint on a schedule")
    add("sync", _sync, "one incremental pass of every endpoint, then exit (for cron)")
    backfill = add("backfill", _backfill, "one-shot historical load of a date range")
    backfill.add_argument(
        "--since", required=True, help="start: ISO date or datetime, 'now', or 'Nd' (N days ago)"
    )
    backfill.add_argument("--until", default="now", help="end, same forms (default: now)")
    backfill.add_argument(
        "--endpoint", type=_endpoint, help="only this endpoint: commits or changes (default: both)"
    )
    status = add("status", _status, "show high-water marks, last runs and row counts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    verify = add(
        "verify", _verify,
        "compare the API's own row counts with the stored rows, span by span "
        "(exit 0: all match, 3: some differ, 1: error)",
    )  # fmt: skip
    verify.add_argument("--since", help="start, same forms as backfill (default: SYNC_START)")
    verify.add_argument(
        "--until", help="end, same forms (default: each endpoint's high-water mark)"
    )
    verify.add_argument("--endpoint", type=_endpoint, help="only this endpoint (default: both)")
    verify.add_argument(
        "--grain", default="1d", help="halve differing spans down to this length (default: 1d)"
    )
    verify.add_argument(
        "--repair", action="store_true", help="re-read differing spans, then count them again"
    )
    verify.add_argument(
        "--prune", action="store_true",
        help="with --repair: delete stored rows a re-read span no longer contains",
    )  # fmt: skip
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    add("migrate", _migrate, "apply database migrations to the latest revision (idempotent)")
    grant = add("grant-read", _grant_read, "let an existing role read the syncer_bi views only")
    grant.add_argument("role", metavar="ROLE", help="an existing PostgreSQL role")
    report = add("report", _report, "write a self-contained HTML report of the syncer_bi views")
    report.add_argument(
        "--since", default="90d", help="start: ISO date or datetime, 'now', or 'Nd' (default 90d)"
    )
    report.add_argument(
        "--out", type=Path, default=Path("syncer-report.html"), help="where to write the HTML"
    )
    add("demo", _demo, "zero-config tour: simulator + embedded PostgreSQL, backfill, daemon")
    fake = add("fake-api", _fake_api, "serve a local simulator of the Cursor API")
    from syncer.fakeapi.cli import add_arguments

    add_arguments(fake)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        from syncer.logs import configure_logging

        configure_logging(settings)
        return int(asyncio.run(args.handler(args, settings)))
    except ConfigError as exc:
        print(f"syncer: error: {exc}", file=sys.stderr)
        return 2
    except SyncerError as exc:
        print(f"syncer: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("syncer: interrupted", file=sys.stderr)
        return 130
