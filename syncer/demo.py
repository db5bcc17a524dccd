"""`syncer demo`: the zero-config tour: simulator, embedded PostgreSQL, backfill, daemon."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from syncer.commands import backfill_command, status_command
from syncer.config import Settings
from syncer.daemon.scheduler import run_daemon
from syncer.errors import ConfigError
from syncer.fakeapi.config import REAL_MAX_RANGE_DAYS, FakeApiConfig
from syncer.fakeapi.server import FakeApi
from syncer.store.db import database_url, to_libpq_url

DEMO_DAYS = 21


async def demo_command(settings: Settings) -> int:
    """Serve three weeks of simulated data, backfill it, show status, then keep syncing."""
    config = FakeApiConfig(
        commits=6_000,
        changes=15_000,
        days=DEMO_DAYS,
        seed=2025,
        live_rate=30.0,
        privacy_mode="0.2",
        max_range_days=REAL_MAX_RANGE_DAYS,
    )
    async with FakeApi(config) as sim:
        demo = settings.model_copy(
            update={
                "cursor_api_key": SecretStr(config.api_key),
                "cursor_api_base_url": sim.url,
                "sync_interval": min(settings.sync_interval, timedelta(seconds=30)),
            }
        )
        url = to_libpq_url(database_url(demo))
        print(f"Cursor API simulator: {sim.url} (key {config.api_key})")
        print(f"PostgreSQL:           {url}")
        print("  connect a BI tool or run: psql " + url)
        print(f"\nBackfilling {DEMO_DAYS} days of commits and changes ...")
        if stopped := await backfill_command(demo, f"{DEMO_DAYS + 1}d", "now", None):
            return stopped  # Ctrl-C during the backfill ends the tour
        print()
        await status_command(demo, as_json=False)
        print(
            "\nTry: psql " + url + " -c 'SELECT source, count(*), sum(total_lines_added) "
            "FROM ai_code_changes GROUP BY 1'"
        )
        await _write_report(demo)
        if demo.sync_http_port:
            port = demo.sync_http_port
            print(f"Health and metrics: http://127.0.0.1:{port}/healthz, /metrics")
        print("\nNow running the daemon (new data arrives every minute); Ctrl-C stops it.\n")
        return await run_daemon(demo)


async def _write_report(settings: Settings) -> None:
    """The HTML report of the demo data, or the hint to install plotly."""
    from syncer.bi.commands import report_command

    print("\nReport of the syncer_bi views (open it in a browser; it works offline):")
    try:
        await report_command(settings, "90d", Path("syncer-report.html"))
    except ConfigError as exc:
        print(f"  skipped: {exc}")
