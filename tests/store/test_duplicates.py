"""The duplicate-key rule: of rows with the same key, the greatest created_at wins, and on
equal created_at the one that arrived last; a row re-served with an older created_at never
overwrites the stored one. Pure on `Batch.absorb`, then on the real PostgreSQL through both
the raw path and the typed path, within a block, across batches and across writers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from syncer.endpoints import Endpoint
from syncer.parse.rows import Rejected
from syncer.store.batch import Batch
from syncer.store.store import Store
from tests.store.support import CHANGES, COMMITS, files, iso, write

T1 = datetime(2025, 7, 30, 14, 0, tzinfo=timezone.utc)
T2 = T1 + timedelta(seconds=1)
T3 = T1 + timedelta(hours=1)


def commit(key: str, created: datetime, message: str) -> tuple[Any, ...]:
    """A parsed commit row (whatever the endpoint's columns are today)."""
    values: dict[str, Any] = {c.name: None for c in Endpoint.COMMITS.columns}
    values.update(commit_hash=key, created_at=created, message=message)
    return (*values.values(), None)


MESSAGE = [c.name for c in Endpoint.COMMITS.columns].index("message")


@pytest.mark.parametrize(
    ("arrivals", "kept"),
    [
        ([(T2, "new"), (T1, "old")], "new"),  # the API's order: newest first
        ([(T1, "old"), (T2, "new")], "new"),
        ([(T1, "first"), (T1, "second")], "second"),  # equal: the last to arrive
        ([(T1, "a"), (T3, "b"), (T2, "c"), (T3, "d"), (T1, "e")], "d"),
    ],
    ids=["newest-first", "newest-last", "equal", "mixed"],
)
def test_a_batch_keeps_the_newest_then_the_last(
    arrivals: list[tuple[datetime, str]], kept: str
) -> None:
    batch = Batch(Endpoint.COMMITS)
    bad = Rejected(raw="x", reason="r", line=1)
    batch.absorb([commit("other", T1, "o"), bad])
    batch.absorb([commit("k", created, message) for created, message in arrivals])
    assert batch.rows["k"][MESSAGE] == kept
    assert batch.rows["other"][MESSAGE] == "o"
    assert batch.newest == max(created for created, _ in arrivals)
    assert batch.rejected == [bad]
    assert len(batch) == 3


# --- on PostgreSQL, both paths ---------------------------------------------------------------


async def messages(conn: asyncpg.Connection) -> dict[str, tuple[str, datetime]]:
    rows = await conn.fetch("SELECT commit_hash, message, created_at FROM ai_commits")
    return {r["commit_hash"]: (r["message"], r["created_at"]) for r in rows}


async def mark(conn: asyncpg.Connection) -> datetime | None:
    result: datetime | None = await conn.fetchval("SELECT max(high_water_mark) FROM sync_state")
    return result


PATHS = ["raw", "typed"]


@pytest.mark.parametrize("path", PATHS)
async def test_in_one_block_the_newest_then_the_last_wins(
    path: str, store: Store, conn: asyncpg.Connection
) -> None:
    records = [
        f"a,a-new,{iso(T2)}",  # newest first, as the API serves an amended commit
        f"b,b-first,{iso(T1)}",
        f"a,a-old,{iso(T1)}",
        f"c,c-old,{iso(T1)}",
        f"b,b-second,{iso(T1)}",
        f"c,c-new,{iso(T3)}",
    ]
    counts = await write(store, Endpoint.COMMITS, COMMITS, records, path)
    assert (counts.inserted, counts.updated, counts.unchanged) == (3, 0, 0)
    assert await messages(conn) == {
        "a": ("a-new", T2),
        "b": ("b-second", T1),
        "c": ("c-new", T3),
    }
    assert await mark(conn) == T3


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stored_by", PATHS)
async def test_an_older_row_served_again_never_overwrites_the_stored_one(
    path: str, stored_by: str, store: Store, conn: asyncpg.Connection
) -> None:
    await write(
        store, Endpoint.COMMITS, COMMITS, [f"a,a-new,{iso(T2)}", f"b,b,{iso(T1)}"], stored_by
    )
    older = await write(store, Endpoint.COMMITS, COMMITS, [f"a,a-old,{iso(T1)}"], path)
    assert (older.inserted, older.updated, older.unchanged) == (0, 0, 1)
    assert await messages(conn) == {"a": ("a-new", T2), "b": ("b", T1)}

    same_time = await write(store, Endpoint.COMMITS, COMMITS, [f"a,a-amended,{iso(T2)}"], path)
    assert (same_time.inserted, same_time.updated) == (0, 1), "equal created_at: the later wins"
    newer = await write(store, Endpoint.COMMITS, COMMITS, [f"b,b-newer,{iso(T3)}"], path)
    assert (newer.inserted, newer.updated) == (0, 1)
    assert await messages(conn) == {"a": ("a-amended", T2), "b": ("b-newer", T3)}
    assert await mark(conn) == T3


@pytest.mark.parametrize("path", PATHS)
async def test_a_changes_files_follow_the_winning_row(
    path: str, store: Store, conn: asyncpg.Connection
) -> None:
    async def stored() -> dict[str, Any]:
        rows = await conn.fetch(
            "SELECT c.change_id, c.model, c.created_at, "
            "array_agg(f.file_name ORDER BY f.file_index) AS files "
            "FROM ai_code_changes c JOIN ai_code_change_files f USING (change_id) "
            "GROUP BY 1, 2, 3"
        )
        return {r["change_id"]: (r["model"], r["created_at"], r["files"]) for r in rows}

    one_block = [
        f"x,new,{iso(T2)},{files('x1.py', 'x2.py')}",
        f"x,old,{iso(T1)},{files('x0.py')}",
        f"y,first,{iso(T1)},{files('y0.py')}",
        f"y,second,{iso(T1)},{files('y1.py', 'y2.py')}",
    ]
    await write(store, Endpoint.CHANGES, CHANGES, one_block, path)
    want = {"x": ("new", T2, ["x1.py", "x2.py"]), "y": ("second", T1, ["y1.py", "y2.py"])}
    assert await stored() == want

    older = await write(
        store, Endpoint.CHANGES, CHANGES, [f"x,old,{iso(T1)},{files('x0.py')}"], path
    )
    assert (older.inserted, older.updated, older.unchanged) == (0, 0, 1)
    assert await stored() == want, "an older version's files do not replace the stored ones"
