"""The schema that BI users query is exactly the contract's, and migrations go up, down and up."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from syncer.store.db import (
    create_engine,
    downgrade,
    head_revision,
    migrate,
    shipped_head,
    to_libpq_url,
)

CONTRACT_COLUMNS = {
    "ai_commits": {
        "commit_hash": "text",
        "user_id": "text",
        "user_email": "text",
        "repo_name": "text",
        "branch_name": "text",
        "is_primary_branch": "boolean",
        "total_lines_added": "bigint",
        "total_lines_deleted": "bigint",
        "tab_lines_added": "bigint",
        "tab_lines_deleted": "bigint",
        "composer_lines_added": "bigint",
        "composer_lines_deleted": "bigint",
        "non_ai_lines_added": "bigint",
        "non_ai_lines_deleted": "bigint",
        "message": "text",
        "commit_ts": "timestamp with time zone",
        "created_at": "timestamp with time zone",
        "extra": "jsonb",
        "synced_at": "timestamp with time zone",
        "commit_source": "text",
        "row_digest": "text",
    },
    "ai_code_changes": {
        "change_id": "text",
        "user_id": "text",
        "user_email": "text",
        "source": "text",
        "model": "text",
        "total_lines_added": "bigint",
        "total_lines_deleted": "bigint",
        "created_at": "timestamp with time zone",
        "extra": "jsonb",
        "files_digest": "text",
        "synced_at": "timestamp with time zone",
        "metadata_digest": "text",
        "row_digest": "text",
    },
    "ai_code_change_files": {
        "change_id": "text",
        "file_index": "integer",
        "file_name": "text",
        "file_extension": "text",
        "lines_added": "bigint",
        "lines_deleted": "bigint",
        "extra": "jsonb",
    },
    "sync_state": {
        "endpoint": "text",
        "high_water_mark": "timestamp with time zone",
        "updated_at": "timestamp with time zone",
    },
}
NOT_NULL = {
    ("ai_commits", "commit_hash"),
    ("ai_commits", "created_at"),
    ("ai_code_changes", "change_id"),
    ("ai_code_changes", "created_at"),
    ("ai_code_change_files", "change_id"),
    ("ai_code_change_files", "file_index"),
}
PRIMARY_KEYS = {
    "ai_commits": ["commit_hash"],
    "ai_code_changes": ["change_id"],
    "ai_code_change_files": ["change_id", "file_index"],
    "sync_state": ["endpoint"],
    "sync_runs": ["id"],
    "rejected_rows": ["id"],
}


async def _columns(conn: asyncpg.Connection, table: str) -> dict[str, tuple[str, bool]]:
    rows = await conn.fetch(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1",
        table,
    )
    return {r["column_name"]: (r["data_type"], r["is_nullable"] == "YES") for r in rows}


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    return {r["table_name"] for r in rows}


@pytest.mark.parametrize("table", sorted(CONTRACT_COLUMNS))
async def test_columns_match_the_contract(database_url: str, table: str) -> None:
    conn = await asyncpg.connect(to_libpq_url(database_url))
    try:
        columns = await _columns(conn, table)
    finally:
        await conn.close()
    assert {name: kind for name, (kind, _) in columns.items()} == CONTRACT_COLUMNS[table]
    for name, (_, nullable) in columns.items():
        assert nullable == (
            (table, name) not in NOT_NULL and name not in ("synced_at", "updated_at", "endpoint")
        ), name


async def test_keys_and_cascade(database_url: str) -> None:
    conn = await asyncpg.connect(to_libpq_url(database_url))
    try:
        for table, key in PRIMARY_KEYS.items():
            rows = await conn.fetch(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = $1::regclass AND i.indisprimary "
                "ORDER BY array_position(i.indkey, a.attnum)",
                table,
            )
            assert [r["attname"] for r in rows] == key, table
        fk = await conn.fetchrow(
            "SELECT confdeltype::text AS confdeltype, confrelid::regclass::text AS parent "
            "FROM pg_constraint "
            "WHERE conrelid = 'ai_code_change_files'::regclass AND contype = 'f'"
        )
        assert fk["parent"] == "ai_code_changes"
        assert fk["confdeltype"] == "c"  # ON DELETE CASCADE
        indexes = {
            r["indexname"]
            for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname='public'")
        }
        for wanted in (
            "ix_ai_commits_created_at",
            "ix_ai_commits_commit_ts",
            "ix_ai_commits_user_email",
            "ix_ai_commits_repo_name",
            "ix_ai_code_changes_created_at",
        ):
            assert wanted in indexes
    finally:
        await conn.close()


async def test_cascade_deletes_file_rows(database_url: str) -> None:
    conn = await asyncpg.connect(to_libpq_url(database_url))
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO ai_code_changes (change_id, created_at) VALUES ('c-cascade', now())"
            )
            await conn.execute(
                "INSERT INTO ai_code_change_files (change_id, file_index) VALUES ('c-cascade', 0)"
            )
            await conn.execute("DELETE FROM ai_code_changes WHERE change_id = 'c-cascade'")
            left = await conn.fetchval(
                "SELECT count(*) FROM ai_code_change_files WHERE change_id = 'c-cascade'"
            )
            assert left == 0
    finally:
        await conn.close()


async def test_up_down_up_round_trip(new_database: object) -> None:
    url: str = await new_database()  # type: ignore[operator]
    engine = create_engine(url)
    conn = None
    try:
        assert await migrate(engine) == (None, head_revision())
        conn = await asyncpg.connect(to_libpq_url(url))
        assert {"ai_commits", "ai_code_changes", "sync_state"} <= await _tables(conn)
        await downgrade(engine, "base")
        assert await _tables(conn) == {"alembic_version"}
        assert await migrate(engine) == (None, head_revision())
        assert await migrate(engine) == (head_revision(), head_revision())
    finally:
        if conn:
            await conn.close()
        await engine.dispose()


async def test_concurrent_migrations_take_turns(new_database: object) -> None:
    url: str = await new_database()  # type: ignore[operator]
    engines = [create_engine(url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(e) for e in engines))
    finally:
        for e in engines:
            await e.dispose()
    assert sorted(before or "" for before, _ in results) == ["", head_revision(), head_revision()]
    assert {after for _, after in results} == {head_revision()}


async def test_commit_source_kept_in_extra_moves_into_its_column(new_database: object) -> None:
    """Rows stored before 0003 kept `commit_source` in `extra`; the upgrade moves it, both ways."""
    url: str = await new_database()  # type: ignore[operator]
    engine = create_engine(url)
    try:
        await migrate(engine, "0002")
        conn = await asyncpg.connect(to_libpq_url(url))
        try:
            await conn.execute(
                "INSERT INTO ai_commits (commit_hash, created_at, extra) VALUES "
                "('a', now(), '{\"commit_source\": \"cli\"}'), "
                '(\'b\', now(), \'{"commitSource": "cloud", "other": 1}\'), '
                "('c', now(), NULL)"
            )
            await migrate(engine)
            rows = await conn.fetch(
                "SELECT commit_hash, commit_source, extra::text AS extra FROM ai_commits "
                "ORDER BY commit_hash"
            )
            assert [tuple(r) for r in rows] == [
                ("a", "cli", None),
                ("b", "cloud", '{"other": 1}'),
                ("c", None, None),
            ]
            await downgrade(engine, "0002")
            extras = await conn.fetch("SELECT extra->>'commit_source' FROM ai_commits ORDER BY 1")
            assert [r[0] for r in extras] == ["cli", "cloud", None]
        finally:
            await conn.close()
    finally:
        await engine.dispose()


def test_the_head_read_from_the_files_is_alembics() -> None:
    # migrate() skips loading Alembic when the database is at this head
    assert shipped_head() == head_revision()
