"""The store's guarantees: set-based upserts that compare before updating, files replaced as a
set, bad rows quarantined with their text, and a high-water mark that never moves back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from syncer.endpoints import Endpoint
from syncer.parse.rows import Rejected
from syncer.results import BatchCounts
from syncer.store.batch import Batch
from syncer.store.mark import ALONE, Turn
from syncer.store.store import Store
from syncer.store.writer import BatchWriter
from tests.store.support import raw_batch

T0 = datetime(2025, 7, 30, 14, 12, 30, tzinfo=timezone.utc)


def commit(
    hash_: str, added: int = 10, *, extra: dict[str, str | None] | None = None
) -> tuple[Any, ...]:
    return (
        hash_,
        "user_1",
        "dev@example.com",
        "company/repo",
        "main",
        True,
        added,
        2,
        5,
        1,
        3,
        0,
        2,
        1,
        'Fix "quoted", comma\nand 日本語',
        T0 - timedelta(seconds=30),
        T0,
        "cli",  # commit_source
        extra,
    )


def change(
    change_id: str, files: tuple[Any, ...], *, model: str | None = "gpt-4o"
) -> tuple[Any, ...]:
    return (change_id, "user_1", "dev@example.com", "COMPOSER", model, 18, 4, T0, files, None)


FILES = (
    ("src/a.ts", "ts", 12, 3, None),
    ("src/b.tsx", "tsx", 6, 1, None),
    (None, "py", 1, 0, {"newKey": 1}),
)


def batch(endpoint: Endpoint, *rows: tuple[Any, ...], rejected: tuple[Rejected, ...] = ()) -> Batch:
    return Batch(endpoint, {row[0]: row for row in rows}, list(rejected))


async def write_batch(
    store: Store, batch: Batch, *, run_id: str, mark: datetime | None = None
) -> BatchCounts:
    """One batch on a writer of its own; with `mark`, its transaction moves the mark too."""

    async def window_newest() -> datetime | None:
        return mark

    async with BatchWriter.open(store) as writer:
        turn = ALONE if mark is None else Turn(window_newest, advance=True)
        return await writer.write(batch, run_id=run_id, turn=turn)


async def test_insert_then_unchanged_then_update(store: Store, conn: asyncpg.Connection) -> None:
    first = await write_batch(store, batch(Endpoint.COMMITS, commit("a"), commit("b")), run_id="r")
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    before = await conn.fetch("SELECT commit_hash, xmin::text FROM ai_commits ORDER BY 1")

    again = await write_batch(store, batch(Endpoint.COMMITS, commit("a"), commit("b")), run_id="r")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    after = await conn.fetch("SELECT commit_hash, xmin::text FROM ai_commits ORDER BY 1")
    assert before == after, "unchanged rows must not be rewritten"

    changed = await write_batch(store, batch(Endpoint.COMMITS, commit("a", added=99)), run_id="r")
    assert (changed.inserted, changed.updated, changed.unchanged) == (0, 1, 0)
    row = await conn.fetchrow("SELECT * FROM ai_commits WHERE commit_hash = 'a'")
    assert row["total_lines_added"] == 99
    assert row["message"] == 'Fix "quoted", comma\nand 日本語'
    assert row["created_at"] == T0
    assert row["extra"] is None


async def test_unknown_columns_kept_in_extra(store: Store, conn: asyncpg.Connection) -> None:
    await write_batch(
        store,
        batch(Endpoint.COMMITS, commit("x", extra={"agent_version": "1.2", "empty": None})),
        run_id="r",
    )
    extra = await conn.fetchval("SELECT extra::text FROM ai_commits WHERE commit_hash = 'x'")
    assert extra == '{"empty": null, "agent_version": "1.2"}'


async def test_change_files_replaced_as_a_set(store: Store, conn: asyncpg.Connection) -> None:
    counts = await write_batch(store, batch(Endpoint.CHANGES, change("c1", FILES)), run_id="r")
    assert counts.inserted == 1
    rows = await conn.fetch(
        "SELECT file_index, file_name, file_extension, lines_added, lines_deleted, extra::text "
        "FROM ai_code_change_files WHERE change_id = 'c1' ORDER BY file_index"
    )
    assert [tuple(r) for r in rows] == [
        (0, "src/a.ts", "ts", 12, 3, None),
        (1, "src/b.tsx", "tsx", 6, 1, None),
        (2, None, "py", 1, 0, '{"newKey": 1}'),
    ]
    ctids = await conn.fetch("SELECT ctid::text FROM ai_code_change_files ORDER BY 1")

    same = await write_batch(store, batch(Endpoint.CHANGES, change("c1", FILES)), run_id="r")
    assert same.unchanged == 1
    assert await conn.fetch("SELECT ctid::text FROM ai_code_change_files ORDER BY 1") == ctids

    fewer = await write_batch(store, batch(Endpoint.CHANGES, change("c1", FILES[:1])), run_id="r")
    assert fewer.updated == 1
    names = await conn.fetch("SELECT file_name FROM ai_code_change_files WHERE change_id = 'c1'")
    assert [r["file_name"] for r in names] == ["src/a.ts"]

    model_only = await write_batch(
        store, batch(Endpoint.CHANGES, change("c1", FILES[:1], model=None)), run_id="r"
    )
    assert model_only.updated == 1
    assert await conn.fetchval("SELECT count(*) FROM ai_code_change_files") == 1
    assert await conn.fetchval("SELECT model FROM ai_code_changes") is None


async def test_rejected_rows_are_quarantined_once(store: Store, conn: asyncpg.Connection) -> None:
    bad = Rejected(raw="x,y,not-a-number", reason="total_lines_added: 'not-a-number'", line=7)
    for _ in range(2):
        counts = await write_batch(
            store, batch(Endpoint.COMMITS, commit("good"), rejected=(bad,)), run_id="r"
        )
        assert counts.rejected == 1
    rows = await conn.fetch("SELECT endpoint, raw, reason, times_seen FROM rejected_rows")
    assert [tuple(r) for r in rows] == [("commits", bad.raw, bad.reason, 2)]
    assert await conn.fetchval("SELECT count(*) FROM ai_commits") == 1


async def test_mark_moves_only_forward(store: Store) -> None:
    empty = Batch(Endpoint.COMMITS)
    assert await store.high_water_mark(Endpoint.COMMITS) is None
    await write_batch(store, empty, run_id="r", mark=T0)
    assert await store.high_water_mark(Endpoint.COMMITS) == T0
    await write_batch(store, empty, run_id="r", mark=T0 - timedelta(days=1))
    assert await store.high_water_mark(Endpoint.COMMITS) == T0
    await write_batch(store, empty, run_id="r", mark=T0 + timedelta(seconds=1))
    assert await store.high_water_mark(Endpoint.COMMITS) == T0 + timedelta(seconds=1)
    assert await store.high_water_mark(Endpoint.CHANGES) is None


async def test_failed_batch_rolls_back_with_its_mark(
    store: Store, conn: asyncpg.Connection
) -> None:
    from syncer.errors import DatabaseError

    poisoned = commit("p")[:-3] + (None, None, None)  # created_at NULL violates NOT NULL
    with pytest.raises(DatabaseError, match="writing a batch failed"):
        await write_batch(
            store, batch(Endpoint.COMMITS, commit("ok"), poisoned), run_id="r", mark=T0
        )
    assert await conn.fetchval("SELECT count(*) FROM ai_commits") == 0
    assert await store.high_water_mark(Endpoint.COMMITS) is None


async def test_one_writer_per_endpoint(store: Store) -> None:
    from syncer.errors import EndpointBusy

    async with store.endpoint_lock(Endpoint.COMMITS, wait=False):
        async with Store.connect(
            str(store.engine.url.render_as_string(hide_password=False))
        ) as other:
            with pytest.raises(EndpointBusy, match="commits: another syncer process"):
                async with other.endpoint_lock(Endpoint.COMMITS, wait=False):
                    pass
            async with other.endpoint_lock(Endpoint.CHANGES, wait=False):
                pass
    async with store.endpoint_lock(Endpoint.COMMITS, wait=False):
        pass


async def test_a_connection_makes_its_staging_tables_once_for_every_writer(store: Store) -> None:
    """A daemon's windows each open a writer on a pooled connection, whose session still holds
    the staging tables: only the first writer on it creates them."""
    statements: list[str] = []
    async with store.raw() as conn:
        conn.add_query_logger(lambda record: statements.append(record.query))
        for _ in range(3):
            await BatchWriter(conn).write_raw(
                raw_batch(Endpoint.COMMITS, "commit_hash,created_at", ["a,2025-07-30T14:00:00Z"]),
                run_id="r",
            )
    assert len([s for s in statements if s.startswith("CREATE TEMP TABLE")]) == 1


async def test_the_pool_hands_out_the_connection_returned_last(store: Store) -> None:
    async with store.raw() as a, store.raw() as b, store.raw() as c:
        pooled = {id(a), id(b), id(c)}
    used = []
    for _ in range(4):
        async with store.raw() as conn:
            used.append(id(conn))
    assert len(set(used)) == 1
    assert used[0] in pooled
