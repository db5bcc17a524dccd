"""One fixed data set for the analytics layer: the simulator, awkward rows added on purpose,
a real `syncer backfill` over HTTP into a database of its own, and the truth it must equal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from syncer.commands import backfill_command
from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi, FakeApiConfig
from syncer.store.db import create_engine, migrate, to_libpq_url

EVER = datetime(2000, 1, 1, tzinfo=timezone.utc)
FAR = datetime(2100, 1, 1, tzinfo=timezone.utc)
#: the end of the simulator's history: fixed, so days and weeks are the same on every run
ANCHOR = datetime(2026, 3, 4, 12, 0, tzinfo=timezone.utc)
SCRIPT_REPO = "<script>alert(1)</script>"
SCRIPT_MODEL = '"><svg onload=alert(3)>'


@dataclass
class BiData:
    """The backfilled database and the simulator's truth with the test's own edits applied."""

    url: str
    commits: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    run_at: datetime


def _files(*entries: tuple[str | None, str | None, int, int]) -> list[dict[str, Any]]:
    return [
        {"file_name": n, "file_extension": e, "lines_added": a, "lines_deleted": d}
        for n, e, a, d in entries
    ]


def _awkward_rows(sim: FakeApi) -> None:
    """Rows the generator makes rarely or never, added so every view meets them."""
    data, day = sim.dataset, ANCHOR.replace(hour=0) - timedelta(days=3)

    def commit(**fields: Any) -> None:
        counts = {
            "total_lines_added": 10, "total_lines_deleted": 2, "tab_lines_added": 3,
            "tab_lines_deleted": 0, "composer_lines_added": 4, "composer_lines_deleted": 1,
            "non_ai_lines_added": None, "non_ai_lines_deleted": None,
        }  # fmt: skip
        data.add(Endpoint.COMMITS, **{**counts, **fields})

    # committed just before midnight UTC, created after it: the commit's day is the earlier one
    commit(
        commit_hash="e" * 40,
        commit_ts=day - timedelta(minutes=30),
        created_at=day + timedelta(minutes=10),
    )
    # a day on which every line count is 0: shares are NULL there, not an error
    quiet = ANCHOR - timedelta(days=24)
    counted = ("total", "tab", "composer")
    zero = {f"{c}_lines_{d}": 0 for c in counted for d in ("added", "deleted")}
    commit(commit_hash="0" * 40, created_at=quiet, commit_ts=None, is_primary_branch=True, **zero)
    # more AI lines than lines in total, and no non_ai_* counts: unattributed is 0, not negative
    commit(
        commit_hash="a" * 40,
        created_at=quiet + timedelta(days=1),
        commit_ts=None,
        total_lines_added=5,
        tab_lines_added=9,
        non_ai_lines_added=None,
        repo_name=SCRIPT_REPO,
        is_primary_branch=None,
    )
    markup_email = "<img src=x onerror=alert(2)>@example.com"
    commit(
        commit_hash="b" * 40,
        created_at=day - timedelta(days=1),
        commit_ts=None,
        repo_name=None,
        branch_name=None,
        is_primary_branch=None,
        user_email=markup_email,
        total_lines_added=5000,
        composer_lines_added=4000,
    )
    data.add(Endpoint.CHANGES, change_id="bi-markup", created_at=day, source="CLI",
             model=SCRIPT_MODEL, total_lines_added=7, total_lines_deleted=1,
             files=_files(("a/B.PY", "PY", 5, 1), ("Makefile", "", 2, 0)))  # fmt: skip
    data.add(Endpoint.CHANGES, change_id="bi-nullmodel", created_at=day, source="TAB",
             model=None, total_lines_added=1, total_lines_deleted=0,
             files=_files((None, None, 1, 0)))  # fmt: skip


def _edit_truth_and_db_statements(commits: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """Edits only the store can make (the CSV has no empty text, the simulator may not serve
    commit_source yet): the same edits go to the truth, so both sides stay comparable."""
    statements: list[tuple[str, list[Any]]] = []
    ordered = sorted(commits, key=lambda c: c["commit_hash"])
    with_repo = next(c for c in ordered if c["repo_name"] not in (None, SCRIPT_REPO))
    with_repo["repo_name"] = ""
    statements.append(
        ("UPDATE ai_commits SET repo_name = '' WHERE commit_hash = $1", [with_repo["commit_hash"]])
    )
    for i, c in enumerate(ordered):
        source = "cli" if i % 3 == 0 else "cloud" if i % 5 == 0 else "" if i % 7 == 0 else None
        c["commit_source"] = source if i % 11 else c.get("commit_source")
        statements.append(
            ("UPDATE ai_commits SET commit_source = $2 WHERE commit_hash = $1",
             [c["commit_hash"], c["commit_source"]])
        )  # fmt: skip
    return statements


@pytest.fixture(scope="session")
async def bi_data(new_database: Any) -> BiData:
    """A database of its own (other tests truncate the shared one), backfilled once."""
    url: str = await new_database()
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    config = FakeApiConfig(
        commits=700, changes=900, days=20, seed=11, anchor=ANCHOR, privacy_mode="0.3",
        new_source_rate=0.1, rate_limit_requests=1000, rate_limit_period=1.0,
    )  # fmt: skip
    async with FakeApi(config) as sim:
        _awkward_rows(sim)
        settings = Settings(
            _env_file=None,
            CURSOR_API_KEY=sim.config.api_key,
            CURSOR_API_BASE_URL=sim.url,
            DATABASE_URL=url,
            CURSOR_RATE_LIMIT_REQUESTS=1000,
            CURSOR_RATE_LIMIT_PERIOD_SECONDS=1,
            SYNC_LOG_FORMAT="json",
        )
        assert await backfill_command(settings, "2026-01-01", "now", None) == 0
        commits = sim.dataset.truth(Endpoint.COMMITS, EVER, FAR)
        changes = sim.dataset.truth(Endpoint.CHANGES, EVER, FAR)
    conn = await asyncpg.connect(to_libpq_url(url))
    try:
        for sql, args in _edit_truth_and_db_statements(commits):
            await conn.execute(sql, *args)
    finally:
        await conn.close()
    return BiData(to_libpq_url(url), commits, changes, datetime.now(timezone.utc))


@pytest.fixture
async def bi_conn(bi_data: BiData) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the backfilled database, as the migrating role."""
    conn = await asyncpg.connect(bi_data.url)
    try:
        yield conn
    finally:
        await conn.close()
