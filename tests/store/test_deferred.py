"""A first load into empty tables builds their indexes after the rows: never on a table that
holds rows, every index back at the end, and a process killed meanwhile leaves tables that
the next command repairs (`syncer status` warns until then)."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import asyncpg
import pytest

from syncer.commands import sync_command
from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi
from syncer.store import deferred
from syncer.store.db import to_libpq_url
from tests.support import env_for, run_syncer, settings_for, sim_config
from tests.truth import assert_equals_truth

DECLARED = {
    Endpoint.COMMITS: {
        "ix_ai_commits_commit_ts",
        "ix_ai_commits_created_at",
        "ix_ai_commits_repo_name",
        "ix_ai_commits_user_email",
    },
    Endpoint.CHANGES: {
        "ix_ai_code_changes_created_at",
        "ix_ai_code_changes_user_email",
        "ix_ai_code_change_files_file_extension",
        deferred.FILES_FK,
    },
}


async def kill_once_loaded(
    conn: asyncpg.Connection, proc: asyncio.subprocess.Process, *tables: str
) -> None:
    """SIGKILL `proc` as soon as each of `tables` holds rows (or after about 30 s)."""
    for _ in range(3000):
        counts = [await conn.fetchval(f"SELECT count(*) FROM {table}") for table in tables]
        if all(counts):
            break
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def test_set_aside_only_empty_tables_and_restore_puts_all_back(clean_db: str) -> None:
    conn = await asyncpg.connect(to_libpq_url(clean_db))
    try:
        for endpoint in Endpoint:
            assert await deferred.missing(conn, endpoint) == []
            assert await deferred.set_aside(conn, endpoint)
            assert set(await deferred.missing(conn, endpoint)) == DECLARED[endpoint]
            assert set(await deferred.restore(conn, endpoint)) == DECLARED[endpoint]
            assert await deferred.missing(conn, endpoint) == []
            assert await deferred.restore(conn, endpoint) == []
        await conn.execute("INSERT INTO ai_commits (commit_hash, created_at) VALUES ('x', now())")
        await conn.execute(
            "INSERT INTO ai_code_changes (change_id, created_at) VALUES ('c', now())"
        )
        for endpoint in Endpoint:
            assert not await deferred.set_aside(conn, endpoint), "never on a table with rows"
            assert await deferred.missing(conn, endpoint) == []
    finally:
        await conn.close()


async def test_a_first_load_ends_with_every_index_and_equal_to_truth(
    clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Endpoint, bool]] = []
    set_aside = deferred.set_aside

    async def spy(conn: Any, endpoint: Endpoint) -> bool:
        calls.append((endpoint, await set_aside(conn, endpoint)))
        return calls[-1][1]

    monkeypatch.setattr(deferred, "set_aside", spy)
    async with FakeApi(sim_config(privacy_mode="0.3")) as sim:
        settings = settings_for(sim, clean_db, SYNC_BATCH_ROWS=100)
        assert await sync_command(settings) == 0
        assert set(calls) == {(Endpoint.COMMITS, True), (Endpoint.CHANGES, True)}
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
        await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            for endpoint in Endpoint:
                assert await deferred.missing(conn, endpoint) == []
        finally:
            await conn.close()
        calls.clear()
        assert await sync_command(settings) == 0  # a short range on tables with rows
        assert calls == []


@pytest.mark.slow
async def test_killed_mid_first_load_status_warns_and_the_next_command_repairs(
    clean_db: str,
) -> None:
    async with FakeApi(sim_config(commits=4000, changes=3000, chunk_delay=0.02)) as sim:
        env = env_for(sim, clean_db, SYNC_BATCH_ROWS="100")
        proc = await run_syncer(env, "sync")
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            await kill_once_loaded(conn, proc, "ai_code_change_files", "ai_commits")
            assert await conn.fetchval("SELECT count(*) FROM ai_commits") < 4000
            for endpoint in Endpoint:
                assert set(await deferred.missing(conn, endpoint)) == DECLARED[endpoint]

            status = await run_syncer(env, "status", "--json")
            out, err = await asyncio.wait_for(status.communicate(), 60)
            assert status.returncode == 0, err.decode()
            shown = {s["endpoint"]: set(s["missing_indexes"]) for s in json.loads(out)}
            assert shown == {e.value: DECLARED[e] for e in Endpoint}
            assert b"warning: commits: indexes missing" in err

            migrate = await run_syncer(env, "migrate")  # any command repairs: here, migrate
            out, err = await asyncio.wait_for(migrate.communicate(), 60)
            assert migrate.returncode == 0, err.decode()
            assert b"rebuilt the indexes" in out
            for endpoint in Endpoint:
                assert await deferred.missing(conn, endpoint) == []
        finally:
            for endpoint in Endpoint:  # whatever happened, leave the session database whole
                await deferred.restore(conn, endpoint)
            await conn.close()

        sim.faults.chunk_delay = 0.0
        rerun = await run_syncer(env, "sync")
        _, err = await asyncio.wait_for(rerun.communicate(), 120)
        assert rerun.returncode == 0, err.decode()
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
        await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)


@pytest.mark.slow
async def test_killed_mid_first_load_the_next_sync_repairs_before_it_syncs(
    clean_db: str,
) -> None:
    async with FakeApi(sim_config(commits=4000, changes=10, chunk_delay=0.02)) as sim:
        env = env_for(sim, clean_db, SYNC_BATCH_ROWS="100")
        proc = await run_syncer(env, "backfill", "--since", "25d", "--endpoint", "commits")
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            await kill_once_loaded(conn, proc, "ai_commits")
            assert await deferred.missing(conn, Endpoint.COMMITS)
            sim.faults.chunk_delay = 0.0
            # the table holds rows now: the sync rebuilds the indexes and loads with them
            rerun = await run_syncer(env, "sync")
            _, err = await asyncio.wait_for(rerun.communicate(), 120)
            assert rerun.returncode == 0, err.decode()
            assert await deferred.missing(conn, Endpoint.COMMITS) == []
            assert b"indexes_built" in err
        finally:
            await deferred.restore(conn, Endpoint.COMMITS)
            await conn.close()
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
