"""The sync engine's guarantees, proved against the simulator over HTTP and a real PostgreSQL:
the database ends equal to the API's truth, row by row, whatever happened on the way."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from syncer.commands import backfill_command, sync_command
from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi
from syncer.results import Outcome
from syncer.store.db import to_libpq_url
from syncer.store.store import Store
from tests.support import env_for, last_runs, run_syncer, settings_for, sim_config
from tests.truth import assert_equals_truth, stored, truth

NOW = datetime.now(timezone.utc)


@pytest.fixture
async def sim() -> AsyncIterator[FakeApi]:
    async with FakeApi(sim_config(privacy_mode="0.3", new_source_rate=0.05)) as api:
        yield api


async def mark_of(url: str, endpoint: Endpoint) -> datetime | None:
    async with Store.connect(url) as store:
        return await store.high_water_mark(endpoint)


async def test_backfill_equals_truth(sim: FakeApi, clean_db: str) -> None:
    assert await backfill_command(settings_for(sim, clean_db), "25d", "now", None) == 0
    assert await assert_equals_truth(clean_db, sim, Endpoint.COMMITS) == 600
    assert await assert_equals_truth(clean_db, sim, Endpoint.CHANGES) == 400
    sources = {row["source"] for row in truth(sim, Endpoint.CHANGES).values()}
    assert sources - {"TAB", "COMPOSER"}, "sources the doc does not list yet are stored too"
    for endpoint in Endpoint:
        newest = max(r["created_at"] for r in truth(sim, endpoint).values())
        assert await mark_of(clean_db, endpoint) == newest
    runs = await last_runs(clean_db)
    assert {(r["endpoint"], r["command"], r["outcome"]) for r in runs} == {
        ("commits", "backfill", "success"),
        ("changes", "backfill", "success"),
    }
    assert sum(r["rows_inserted"] for r in runs) == 1000


async def test_incremental_pass_picks_up_new_late_and_updated_rows(
    sim: FakeApi, clean_db: str
) -> None:
    settings = settings_for(sim, clean_db)
    data = sim.dataset
    three_files = [
        {"file_name": f"src/f{i}.py", "file_extension": "py", "lines_added": i, "lines_deleted": 0}
        for i in range(3)
    ]
    data.add(Endpoint.CHANGES, change_id="recent-change", files=three_files)
    await sync_command(settings)
    mark = await mark_of(clean_db, Endpoint.COMMITS)
    assert mark is not None
    assert len((await stored(clean_db, Endpoint.CHANGES))["recent-change"]["files"]) == 3

    newest = max(truth(sim, Endpoint.COMMITS).values(), key=lambda r: r["created_at"])
    assert newest["created_at"] == mark  # so an update to it falls inside the lookback
    data.add(Endpoint.COMMITS, commit_hash="new-commit")
    data.add(Endpoint.COMMITS, commit_hash="late-commit", created_at=mark - timedelta(minutes=5))
    data.update(
        Endpoint.COMMITS, newest["commit_hash"], message="edited, again", total_lines_added=4242
    )
    data.update(Endpoint.CHANGES, "recent-change", files=three_files[:1], model="new-model")

    assert await sync_command(settings) == 0
    await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
    await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)
    db = await stored(clean_db, Endpoint.CHANGES)
    assert db["recent-change"]["files"] == three_files[:1]
    assert db["recent-change"]["model"] == "new-model"
    runs = [r for r in await last_runs(clean_db) if r["endpoint"] == "commits"]
    assert (runs[-1]["rows_inserted"], runs[-1]["rows_updated"]) == (2, 1)


@pytest.mark.parametrize("form", ["csv", "json"])
async def test_a_windows_last_batch_carries_the_mark_in_its_own_transaction(
    sim: FakeApi, clean_db: str, form: str
) -> None:
    """An incremental pass of one block commits once: its rows and the mark together (both
    stamped with the one transaction's now())."""
    settings = settings_for(sim, clean_db, CURSOR_API_FORMAT=form)
    assert await sync_command(settings) == 0
    sim.dataset.add(Endpoint.COMMITS, commit_hash="new-commit")
    assert await sync_command(settings) == 0
    conn = await asyncpg.connect(to_libpq_url(clean_db))
    try:
        mark, row = await conn.fetchrow(
            "SELECT (SELECT updated_at FROM sync_state WHERE endpoint = 'commits'), "
            "(SELECT synced_at FROM ai_commits WHERE commit_hash = 'new-commit')"
        )
    finally:
        await conn.close()
    assert mark == row


async def test_duplicate_keys_in_one_stream_last_wins(clean_db: str) -> None:
    async with FakeApi(sim_config(duplicate_rate=0.2)) as sim:
        assert await sync_command(settings_for(sim, clean_db, SYNC_BATCH_ROWS=37)) == 0
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
        await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)


async def test_malformed_rows_are_quarantined_and_good_rows_load(clean_db: str) -> None:
    async with FakeApi(sim_config(malformed_rate=0.05)) as sim:
        assert await sync_command(settings_for(sim, clean_db, SYNC_BATCH_ROWS=50)) == 0
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
        await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            for endpoint in Endpoint:
                bad = sim.dataset.malformed_keys(
                    endpoint, datetime(2000, 1, 1, tzinfo=timezone.utc), NOW + timedelta(days=1)
                )
                assert bad, "the simulator should have served malformed rows"
                rows = await conn.fetch(
                    "SELECT raw, reason FROM rejected_rows WHERE endpoint = $1", endpoint.value
                )
                assert all(r["reason"] for r in rows)
                quarantined = {k for k in bad if any(k in r["raw"] for r in rows)}
                assert quarantined == bad
        finally:
            await conn.close()


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
async def test_one_stray_quote_is_one_quarantined_row_not_a_stuck_window(
    clean_db: str, raw: bool
) -> None:
    # A quote inside an unquoted field leaves the quote count odd to the end of the stream,
    # which once read as "cut inside a quoted field": retried, split, and failed for ever.
    ever, far = datetime(2000, 1, 1, tzinfo=timezone.utc), NOW + timedelta(days=1)
    async with FakeApi(sim_config(malformed_rate=0.005)) as sim:
        stray = {e: sim.dataset.malformed_keys(e, ever, far, kind="stray_quote") for e in Endpoint}
        assert [len(keys) for keys in stray.values()] == [1, 1], "one, so the count stays odd"
        assert await sync_command(settings_for(sim, clean_db, SYNC_RAW_PATH=raw)) == 0
        for endpoint in Endpoint:
            await assert_equals_truth(clean_db, sim, endpoint)
            assert sim.stats.count(endpoint.csv_path) == 1, "no retry, no split"
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            for endpoint, (key,) in stray.items():
                rows = await conn.fetch(
                    "SELECT raw, reason FROM rejected_rows WHERE endpoint = $1", endpoint.value
                )
                assert [r["reason"] for r in rows if key in r["raw"]], endpoint
        finally:
            await conn.close()


async def test_a_failing_window_is_split_in_halves(clean_db: str) -> None:
    async with FakeApi(sim_config()) as sim:
        settings = settings_for(sim, clean_db, CURSOR_MAX_RETRIES=1, SYNC_MIN_WINDOW="1h")
        sim.faults.fail_next(2, status=503)  # both attempts at the first window fail
        assert await backfill_command(settings, "25d", "now", Endpoint.COMMITS) == 0
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
        runs = await last_runs(clean_db)
        assert runs[-1]["outcome"] == "success"


async def test_a_window_failing_below_the_floor_fails_the_pass_clearly(clean_db: str) -> None:
    from syncer.errors import ServerError

    async with FakeApi(sim_config(fail_every=1, fail_status=500)) as sim:
        settings = settings_for(
            sim, clean_db, CURSOR_MAX_RETRIES=0, SYNC_WINDOW="10d", SYNC_MIN_WINDOW="4d"
        )
        with pytest.raises(ServerError, match="500"):
            await backfill_command(settings, "20d", "now", Endpoint.COMMITS)
        runs = await last_runs(clean_db)
        assert runs[-1]["outcome"] == "failed"
        assert "500" in runs[-1]["error"]
        assert await mark_of(clean_db, Endpoint.COMMITS) is None


async def test_backfill_moves_the_mark_only_when_it_is_contiguous(
    sim: FakeApi, clean_db: str
) -> None:
    settings = settings_for(sim, clean_db)
    all_commits = truth(sim, Endpoint.COMMITS)

    def newest_before(moment: datetime) -> datetime:
        return max(r["created_at"] for r in all_commits.values() if r["created_at"] <= moment)

    before = datetime.now(timezone.utc)
    await backfill_command(settings, "25d", "10d", Endpoint.COMMITS)
    after = datetime.now(timezone.utc)
    first = await mark_of(clean_db, Endpoint.COMMITS)
    assert first is not None  # "10d" is read at some instant between `before` and `after`
    ten_days = timedelta(days=10)
    assert newest_before(before - ten_days) <= first <= newest_before(after - ten_days)

    await backfill_command(settings, "5d", "now", Endpoint.COMMITS)  # a gap: 10d..5d
    assert await mark_of(clean_db, Endpoint.COMMITS) == first

    await backfill_command(settings, "12d", "now", Endpoint.COMMITS)
    assert await mark_of(clean_db, Endpoint.COMMITS) == newest_before(datetime.now(timezone.utc))

    await backfill_command(settings, "25d", "20d", Endpoint.COMMITS)  # never backwards
    assert await mark_of(clean_db, Endpoint.COMMITS) == newest_before(datetime.now(timezone.utc))
    await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)


async def test_a_busy_endpoint_is_skipped(sim: FakeApi, clean_db: str) -> None:
    settings = settings_for(sim, clean_db)
    async with Store.connect(clean_db) as store, store.endpoint_lock(Endpoint.COMMITS, wait=False):
        assert await sync_command(settings) == 0
    runs = await last_runs(clean_db)
    assert {(r["endpoint"], r["outcome"]) for r in runs} == {
        ("commits", Outcome.SKIPPED.value),
        ("changes", Outcome.SUCCESS.value),
    }
    assert await mark_of(clean_db, Endpoint.COMMITS) is None


@pytest.mark.slow
async def test_two_concurrent_sync_processes_end_equal_to_truth(clean_db: str) -> None:
    async with FakeApi(sim_config(commits=3000, changes=2000, chunk_delay=0.002)) as sim:
        env = env_for(sim, clean_db, SYNC_BATCH_ROWS="200")
        procs = [await run_syncer(env, "sync") for _ in range(2)]
        outputs = [await asyncio.wait_for(p.communicate(), 120) for p in procs]
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err.decode()
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
        await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)
        runs = await last_runs(clean_db)
        assert sorted(r["outcome"] for r in runs if r["endpoint"] == "commits") in (
            ["skipped", "success"],
            ["success", "success"],
        )


@pytest.mark.slow
async def test_killed_mid_window_loses_nothing(clean_db: str) -> None:
    async with FakeApi(sim_config(commits=4000, changes=10, chunk_delay=0.02)) as sim:
        # 2-day windows: the mark moves with each window, so the kill lands after some
        # windows committed their mark and in the middle of the stream as a whole
        env = env_for(sim, clean_db, SYNC_BATCH_ROWS="100", SYNC_WINDOW="2d")
        proc = await run_syncer(env, "backfill", "--since", "25d", "--endpoint", "commits")
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        mark_sql = "SELECT high_water_mark FROM sync_state WHERE endpoint = 'commits'"
        try:
            for _ in range(3000):
                if await conn.fetchval(mark_sql) is not None:
                    break
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            committed = await conn.fetchval("SELECT count(*) FROM ai_commits")
            assert 0 < committed < 4000, "the kill should land mid-stream"
            mark = await conn.fetchval(mark_sql)
            assert mark is not None
            db = await stored(clean_db, Endpoint.COMMITS)  # the mark never passes a lost row
            behind = [k for k, r in truth(sim, Endpoint.COMMITS).items() if r["created_at"] <= mark]
            assert behind
            assert all(k in db for k in behind)
        finally:
            await conn.close()

        sim.faults.chunk_delay = 0.0
        rerun = await run_syncer(env, "backfill", "--since", "25d", "--endpoint", "commits")
        _, err = await asyncio.wait_for(rerun.communicate(), 120)
        assert rerun.returncode == 0, err.decode()
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
        runs = await last_runs(clean_db)
        assert [r["outcome"] for r in runs] == ["abandoned", "success"]


async def test_an_unreachable_api_fails_fast_without_splitting(clean_db: str) -> None:
    import socket
    import time

    from syncer.errors import ApiTimeout, ApiUnreachable

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        _env_file=None,
        CURSOR_API_KEY="k",
        CURSOR_API_BASE_URL=closed,
        DATABASE_URL=clean_db,
        CURSOR_MAX_RETRIES=0,
        CURSOR_RATE_LIMIT_REQUESTS=1000,
        CURSOR_RATE_LIMIT_PERIOD_SECONDS=1,
        SYNC_WINDOW="10d",
        SYNC_MIN_WINDOW="1h",
    )
    started = time.monotonic()
    with pytest.raises(ApiUnreachable, match="Cannot connect") as info:
        await backfill_command(settings, "20d", "now", Endpoint.COMMITS)
    assert not isinstance(info.value, ApiTimeout)
    assert time.monotonic() - started < 10, "a refused connection must not be split and retried"
    runs = await last_runs(clean_db)
    assert (runs[-1]["outcome"], runs[-1]["windows"]) == ("failed", 0)


async def test_status_shows_marks_rows_and_last_runs(
    sim: FakeApi, clean_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from syncer.commands import status_command

    settings = settings_for(sim, clean_db)
    await backfill_command(settings, "25d", "now", Endpoint.COMMITS)
    capsys.readouterr()
    assert await status_command(settings, as_json=True) == 0
    status = {s["endpoint"]: s for s in json.loads(capsys.readouterr().out)}
    commits, changes = status["commits"], status["changes"]
    assert commits["rows"] == 600
    assert commits["high_water_mark"].endswith("Z")
    assert commits["lag_seconds"] >= 0
    assert commits["last_run"]["outcome"] == "success"
    assert commits["last_run"]["command"] == "backfill"
    assert commits["last_run"]["rows_inserted"] == 600
    assert (changes["rows"], changes["high_water_mark"], changes["last_run"]) == (0, None, None)

    assert await status_command(settings, as_json=False) == 0
    table = capsys.readouterr().out
    assert "commits" in table
    assert "600" in table
    assert "backfill" in table
    assert "success" in table
