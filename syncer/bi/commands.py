"""What `grant-read` and `report` do, given Settings; the CLI only parses flags."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from syncer.config import Settings
from syncer.errors import ConfigError, DatabaseError
from syncer.store.db import database_url, migrate
from syncer.store.store import Store
from syncer.timespec import parse_spec


async def grant_read_command(settings: Settings, role: str) -> int:
    """Migrate (so the views exist), then give `role` read access to them."""
    from syncer.bi.grants import grant_read

    async with Store.connect(database_url(settings)) as store:
        await migrate(store.engine)
        try:
            warnings = await grant_read(store.engine, role)
        except DBAPIError as exc:
            raise DatabaseError(f"grant-read: {str(exc.orig).splitlines()[0]}") from None
    for warning in warnings:
        print(f"syncer: warning: {warning}", file=sys.stderr)
    print(f"{role}: may read the syncer_bi views (now and later), and nothing else we granted")
    return 0


async def report_command(settings: Settings, since: str, out: Path) -> int:
    """Write the HTML report of the period from `since` to now; print its path."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        from syncer.bi.report import INSTALL_HINT

        raise ConfigError(INSTALL_HINT) from None
    from syncer.bi.report import load, render

    try:
        start = parse_spec(since, datetime.now(timezone.utc))
    except ValueError as exc:
        raise ConfigError(f"report: {exc}") from None
    async with Store.connect(database_url(settings)) as store:
        await migrate(store.engine)
        async with store.engine.connect() as conn:
            data = await load(conn, start.date())
    print(_write(out, render(data)))
    return 0


def _write(out: Path, page: str) -> Path:
    """Write the page; return its absolute path."""
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"report: cannot write {out}: {exc.strerror}") from None
    return out.resolve()
