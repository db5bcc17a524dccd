"""`syncer grant-read ROLE`: the role reads every view and nothing else, and cannot write."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from .conftest import BiData

RAW_TABLES = ("ai_commits", "ai_code_changes", "ai_code_change_files", "sync_runs", "sync_state")


def _syncer(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CURSOR_", "SYNC_"))}
    env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "syncer", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
async def reader(bi_data: BiData) -> AsyncIterator[str]:
    """A fresh role (roles are cluster-wide: unique name, dropped after) with an awkward name."""
    name = f'syncer "bi" reader {uuid.uuid4().hex[:8]}'
    quoted = '"' + name.replace('"', '""') + '"'
    conn = await asyncpg.connect(bi_data.url)
    try:
        await conn.execute(f"CREATE ROLE {quoted} NOLOGIN")
        yield name
    finally:
        await conn.execute(f"DROP OWNED BY {quoted}")
        await conn.execute(f"DROP ROLE {quoted}")
        await conn.close()


def _as(role: str) -> str:
    return "SET ROLE " + '"' + role.replace('"', '""') + '"'


async def _views(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.views WHERE table_schema = 'syncer_bi'"
    )
    return sorted(r["table_name"] for r in rows)


@pytest.mark.slow
async def test_role_reads_every_view_and_nothing_else(
    bi_data: BiData, bi_conn: asyncpg.Connection, reader: str
) -> None:
    for _ in range(2):  # running it twice is harmless
        done = _syncer(bi_data.url, "grant-read", reader)
        assert done.returncode == 0, done.stderr
    views = await _views(bi_conn)
    assert len(views) >= 10
    counts = {v: await bi_conn.fetchval(f"SELECT count(*) FROM syncer_bi.{v}") for v in views}

    for view in views:  # no write privilege on any view (none is updatable anyway)
        assert not await bi_conn.fetchval(
            "SELECT has_table_privilege($1, $2, 'INSERT, UPDATE, DELETE, TRUNCATE')",
            reader,
            f"syncer_bi.{view}",
        )
    await bi_conn.execute(_as(reader))
    try:
        for view in views:  # the same rows the owner sees: the views read with its rights
            assert await bi_conn.fetchval(f"SELECT count(*) FROM syncer_bi.{view}") == counts[view]
        for table in RAW_TABLES:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await bi_conn.fetch(f"SELECT * FROM public.{table} LIMIT 1")
        denied = [
            "INSERT INTO public.ai_commits (commit_hash, created_at) VALUES ('x', now())",
            "CREATE TABLE syncer_bi.mine (x int)",
            "CREATE VIEW syncer_bi.mine AS SELECT 1",
            "CREATE TABLE public.mine (x int)",
            "CREATE SCHEMA mine",
        ]
        for statement in denied:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await bi_conn.execute(statement)
    finally:
        await bi_conn.execute("RESET ROLE")


@pytest.mark.slow
async def test_views_added_later_are_readable_too(
    bi_data: BiData, bi_conn: asyncpg.Connection, reader: str
) -> None:
    assert _syncer(bi_data.url, "grant-read", reader).returncode == 0
    await bi_conn.execute("CREATE VIEW syncer_bi.later AS SELECT count(*) AS n FROM ai_commits")
    try:
        await bi_conn.execute(_as(reader))
        assert await bi_conn.fetchval("SELECT n FROM syncer_bi.later") == len(bi_data.commits)
    finally:
        await bi_conn.execute("RESET ROLE")
        await bi_conn.execute("DROP VIEW syncer_bi.later")


@pytest.mark.slow
def test_a_missing_role_is_a_one_line_error(bi_data: BiData) -> None:
    done = _syncer(bi_data.url, "grant-read", f"nobody_{uuid.uuid4().hex[:8]}")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
