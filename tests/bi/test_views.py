"""Every `syncer_bi` view equals the figures computed by hand from the simulator's truth."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from syncer.store.db import create_engine, downgrade, migrate

from . import expected
from .conftest import SCRIPT_REPO, BiData

CONTRACT_COLUMNS = {
    "commit_facts": "commit_hash, user_email, repo_name, branch_name, branch_scope, "
    "commit_source, ts, day, tab_lines_added, tab_lines_deleted, composer_lines_added, "
    "composer_lines_deleted, ai_lines_added, ai_lines_deleted, total_lines_added, "
    "total_lines_deleted, unattributed_lines_added, unattributed_lines_deleted, ai_assisted",
    "ai_share_daily": "day, branch_scope, commits, ai_assisted_commits, ai_lines_added, "
    "total_lines_added, ai_share_added, ai_lines_changed, total_lines_changed, ai_share_changed",
    "changes_daily": "day, source, model, changes, lines_added, lines_deleted, users",
    "files_daily": "day, source, file_extension, changes, files, lines_added, lines_deleted",
    "active_users_weekly": "week, users_with_ai_changes, users_with_ai_commits, users_any",
}


def _keyed(rows: list[asyncpg.Record], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[k] for k in keys): {k: v for k, v in r.items() if k not in keys} for r in rows}


async def _columns(conn: asyncpg.Connection, view: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'syncer_bi' AND table_name = $1 ORDER BY ordinal_position",
        view,
    )
    return [r["column_name"] for r in rows]


@pytest.mark.parametrize("view", sorted(CONTRACT_COLUMNS))
async def test_contract_columns_come_first_in_order(bi_conn: asyncpg.Connection, view: str) -> None:
    want = CONTRACT_COLUMNS[view].split(", ")
    assert (await _columns(bi_conn, view))[: len(want)] == want


async def test_the_data_set_has_every_awkward_case(bi_data: BiData) -> None:
    """Guards the other tests: each case they must handle is really in the data."""
    c, ch = bi_data.commits, bi_data.changes
    assert any(r["repo_name"] is None for r in c)
    assert any(r["repo_name"] == "" for r in c)
    assert any(r["is_primary_branch"] is None for r in c)
    assert any(r["commit_ts"] is None for r in c)
    assert any(r["non_ai_lines_added"] is None for r in c)
    assert any(r["tab_lines_added"] + r["composer_lines_added"] > r["total_lines_added"] for r in c)
    assert any(r["total_lines_added"] == 0 for r in c)
    assert {r.get("commit_source") for r in c} >= {None, "", "cli", "cloud"}
    assert any(r["model"] is None for r in ch)
    assert {r["source"] for r in ch} - {"TAB", "COMPOSER"}, "sources the doc does not list"
    assert any(f["file_extension"] in (None, "") for r in ch for f in r["files"])


async def test_commit_facts_row_by_row(bi_data: BiData, bi_conn: asyncpg.Connection) -> None:
    want = expected.commit_facts(bi_data.commits)
    rows = await bi_conn.fetch("SELECT * FROM syncer_bi.commit_facts")
    got = {r["commit_hash"]: dict(r) for r in rows}
    assert got.keys() == want.keys()
    differing = [h for h in want if got[h] != want[h]]
    assert not differing, (got[differing[0]], want[differing[0]])
    assert got["a" * 40]["repo_name"] == SCRIPT_REPO
    assert got["a" * 40]["unattributed_lines_added"] == 0  # 9 AI lines of 5: never negative


async def test_ai_share_daily(bi_data: BiData, bi_conn: asyncpg.Connection) -> None:
    want = expected.ai_share_daily(expected.commit_facts(bi_data.commits))
    got = _keyed(
        await bi_conn.fetch("SELECT * FROM syncer_bi.ai_share_daily"), "day", "branch_scope"
    )
    assert got == want
    assert any(v["ai_share_added"] is None for v in got.values()), "a day with 0 lines total"
    assert any((v["ai_share_added"] or 0) > 1 for v in got.values()), "shares are not clamped"


async def test_repo_daily(bi_data: BiData, bi_conn: asyncpg.Connection) -> None:
    want = expected.repo_daily(expected.commit_facts(bi_data.commits))
    got = _keyed(await bi_conn.fetch("SELECT * FROM syncer_bi.repo_daily"), "day", "repo_name")
    assert got == want
    assert "Unknown" in {repo for _, repo in got}


async def test_changes_daily(bi_data: BiData, bi_conn: asyncpg.Connection) -> None:
    want = expected.changes_daily(bi_data.changes)
    rows = await bi_conn.fetch("SELECT * FROM syncer_bi.changes_daily")
    assert _keyed(rows, "day", "source", "model") == want
    assert {"CLI", "(none)"} <= {r["source"] for r in rows} | {r["model"] for r in rows}


async def test_files_daily(bi_data: BiData, bi_conn: asyncpg.Connection) -> None:
    want = expected.files_daily(bi_data.changes)
    rows = await bi_conn.fetch("SELECT * FROM syncer_bi.files_daily")
    assert _keyed(rows, "day", "source", "file_extension") == want
    assert {"py", "(none)"} <= {r["file_extension"] for r in rows}


async def test_active_users_weekly(bi_data: BiData, bi_conn: asyncpg.Connection) -> None:
    facts = expected.commit_facts(bi_data.commits)
    want = expected.active_users_weekly(facts, bi_data.changes)
    rows = await bi_conn.fetch("SELECT * FROM syncer_bi.active_users_weekly")
    assert _keyed(rows, "week") == {(w,): v for w, v in want.items()}
    assert all(r["week"].weekday() == 0 for r in rows)


async def test_user_weekly_adoption_and_proxy(bi_data: BiData, bi_conn: asyncpg.Connection) -> None:
    facts = expected.commit_facts(bi_data.commits)
    want = expected.user_weekly(facts, bi_data.changes)
    rows = await bi_conn.fetch("SELECT * FROM syncer_bi.user_weekly")
    assert _keyed(rows, "week", "user_email") == want
    assert any(r["favourite_model"] is None and r["changes"] for r in rows)

    cohorts = _keyed(
        await bi_conn.fetch("SELECT * FROM syncer_bi.adoption_weekly"), "week", "user_email"
    )
    assert {k: v["cohort"] for k, v in cohorts.items()} == {
        k: expected.cohort(v["ai_lines_added"], v["total_lines_added"])
        for k, v in want.items()
        if v["commits"]
    }
    assert {v["cohort"] for v in cohorts.values()} == {"none", "light", "moderate", "heavy"}

    proxy = _keyed(
        await bi_conn.fetch("SELECT * FROM syncer_bi.ai_lines_proxy_weekly"), "week", "user_email"
    )
    assert proxy == {
        k: {
            "accepted_lines_added": v["accepted_lines_added"],
            "committed_ai_lines_added": v["ai_lines_added"],
            "committed_per_accepted_proxy": expected.ratio(
                v["ai_lines_added"], v["accepted_lines_added"]
            ),
        }
        for k, v in want.items()
    }


async def test_freshness(bi_data: BiData, bi_conn: asyncpg.Connection) -> None:
    rows = {r["endpoint"]: r for r in await bi_conn.fetch("SELECT * FROM syncer_bi.freshness")}
    for endpoint, truth in (("commits", bi_data.commits), ("changes", bi_data.changes)):
        row = rows[endpoint]
        assert row["row_count"] == len(truth)
        assert row["high_water_mark"] == max(r["created_at"] for r in truth)
        assert row["last_run_command"] == "backfill"
        assert row["last_run_outcome"] == "success"
        assert row["last_success_at"] == row["last_run_finished_at"] <= bi_data.run_at
        lag = bi_data.run_at - row["high_water_mark"]
        assert row["lag_seconds"] >= lag.total_seconds()


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "America/Los_Angeles", "Asia/Tokyo"])
async def test_days_and_weeks_are_utc_whatever_the_session_time_zone(
    bi_conn: asyncpg.Connection, zone: str
) -> None:
    queries = [
        "SELECT commit_hash, day, week FROM syncer_bi.commit_facts ORDER BY 1",
        "SELECT * FROM syncer_bi.changes_daily ORDER BY 1, 2, 3",
        "SELECT * FROM syncer_bi.active_users_weekly ORDER BY 1",
        "SELECT * FROM syncer_bi.user_weekly ORDER BY 1, 2",
    ]
    await bi_conn.execute("SET TimeZone = 'UTC'")
    in_utc = [await bi_conn.fetch(q) for q in queries]
    await bi_conn.execute(f"SET TimeZone = '{zone}'")
    assert [await bi_conn.fetch(q) for q in queries] == in_utc
    late = await bi_conn.fetchrow(
        "SELECT ts, day FROM syncer_bi.commit_facts WHERE commit_hash = $1", "e" * 40
    )
    assert late["day"] == (late["ts"] + timedelta(minutes=30)).date() - timedelta(days=1)


async def test_downgrade_drops_the_schema_and_upgrade_restores_it(new_database: Any) -> None:
    url: str = await new_database()
    engine = create_engine(url)
    try:
        await migrate(engine)
        await downgrade(engine, "0003")
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            assert not await conn.fetchval("SELECT to_regnamespace('syncer_bi')")
            await migrate(engine)
            assert await conn.fetchval("SELECT count(*) FROM syncer_bi.commit_facts") == 0
        finally:
            await conn.close()
    finally:
        await engine.dispose()
