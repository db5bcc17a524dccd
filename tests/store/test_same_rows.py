"""A row re-served with the very text it was typed from (the raw path's `row_digest`) is
neither typed nor compared again; anything else that writes a row makes the next reload
compare it by value; and the duplicate-key rule holds for such rows within a block and across
the two lanes of a window."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
import structlog

from syncer.endpoints import Endpoint
from syncer.store.mark import Turn
from syncer.store.store import Store
from syncer.store.writer import BatchWriter
from tests.store.support import CHANGES, COMMITS, files, iso, overtaken, raw_batch, write

T1 = datetime(2025, 7, 30, 14, 0, tzinfo=timezone.utc)
T0 = T1 - timedelta(hours=1)


async def stored(conn: asyncpg.Connection, key: str = "a") -> tuple[str, str | None]:
    row = await conn.fetchrow(
        "SELECT message, row_digest FROM ai_commits WHERE commit_hash = $1", key
    )
    return row["message"], row["row_digest"]


async def test_the_same_text_is_not_compared_again_and_a_cleared_digest_compares_values(
    store: Store, conn: asyncpg.Connection
) -> None:
    records = [f"a,hello,{iso(T1)}"]
    await write(store, Endpoint.COMMITS, COMMITS, records, "raw")
    message, digest = await stored(conn)
    assert message == "hello"
    assert digest is not None
    # An edit the digest does not know of shows that the reload neither typed nor compared
    # the row: it is counted unchanged and left as it is.
    await conn.execute("UPDATE ai_commits SET message = 'edited'")
    counts = await write(store, Endpoint.COMMITS, COMMITS, records, "raw")
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 1)
    assert await stored(conn) == ("edited", digest)
    # Without a digest the row is compared by value again, repaired, and digested anew.
    await conn.execute("UPDATE ai_commits SET row_digest = NULL")
    counts = await write(store, Endpoint.COMMITS, COMMITS, records, "raw")
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 0)
    assert await stored(conn) == ("hello", digest)


async def test_a_text_with_the_same_values_is_compared_and_keeps_the_stored_digest(
    store: Store, conn: asyncpg.Connection
) -> None:
    await write(store, Endpoint.COMMITS, COMMITS, [f"a,hello,{iso(T1)}"], "raw")
    _, digest = await stored(conn)
    other_spelling = T1.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
    counts = await write(store, Endpoint.COMMITS, COMMITS, [f"a,hello,{other_spelling}"], "raw")
    assert (counts.updated, counts.unchanged) == (0, 1), "equal values: nothing rewritten"
    assert await stored(conn) == ("hello", digest)


async def test_the_typed_path_clears_the_digest_of_what_it_writes(
    store: Store, conn: asyncpg.Connection
) -> None:
    await write(store, Endpoint.COMMITS, COMMITS, [f"a,hello,{iso(T1)}", f"b,b,{iso(T1)}"], "raw")
    counts = await write(
        store, Endpoint.COMMITS, COMMITS, [f"a,changed,{iso(T1)}", f"b,b,{iso(T1)}"], "typed"
    )
    assert (counts.updated, counts.unchanged) == (1, 1)
    assert await stored(conn, "a") == ("changed", None)
    assert (await stored(conn, "b"))[1] is not None, "an unchanged row keeps its digest"
    await write(store, Endpoint.CHANGES, CHANGES, [f"x,m,{iso(T1)},{files('x.py')}"], "raw")
    await write(store, Endpoint.CHANGES, CHANGES, [f"x,n,{iso(T1)},{files('x.py')}"], "typed")
    assert await conn.fetchval("SELECT row_digest FROM ai_code_changes") is None


async def test_in_a_block_a_row_found_unchanged_takes_part_in_the_duplicate_rule(
    store: Store, conn: asyncpg.Connection
) -> None:
    await write(store, Endpoint.COMMITS, COMMITS, [f"a,v1,{iso(T1)}", f"b,v1,{iso(T1)}"], "raw")
    block = [
        f"a,v1,{iso(T1)}",  # the stored text, then a later arrival at the same created_at
        f"a,v2,{iso(T1)}",
        f"b,v2,{iso(T1)}",  # a different text, then the stored one: it arrived last
        f"b,v1,{iso(T1)}",
        f"b,v0,{iso(T0)}",  # older: never wins
    ]
    counts = await write(store, Endpoint.COMMITS, COMMITS, block, "raw")
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 1)
    assert (await stored(conn, "a"))[0] == "v2"
    assert (await stored(conn, "b"))[0] == "v1"


async def test_a_row_rewritten_while_its_block_waited_for_its_turn_is_not_skipped(
    store: Store, conn: asyncpg.Connection
) -> None:
    """Block 2 is staged (and finds `a` unchanged) while block 1, staged earlier, waits; then
    block 1 rewrites `a` and commits. Block 2's copy of `a` arrived last and must win: the
    block is read the typed way, and `a` ends with block 2's text."""
    await write(store, Endpoint.COMMITS, COMMITS, [f"a,v1,{iso(T1)}"], "raw")
    first = raw_batch(Endpoint.COMMITS, COMMITS, [f"a,v2,{iso(T1)}"])
    second = raw_batch(Endpoint.COMMITS, COMMITS, [f"a,v1,{iso(T1)}"])
    with structlog.testing.capture_logs() as logs:
        await overtaken(store, first, second)
    assert (await stored(conn))[0] == "v1"
    assert [e["event"] for e in logs] == ["raw_block_read_typed"]
    assert "a" in logs[0]["reason"]
    # read the typed way, the row has no digest: the next reload compares it by value, equal
    counts = await write(store, Endpoint.COMMITS, COMMITS, [f"a,v1,{iso(T1)}"], "raw")
    assert (counts.updated, counts.unchanged) == (0, 1)


async def test_an_unchanged_change_keeps_its_row_and_file_rows_untouched(
    store: Store, conn: asyncpg.Connection
) -> None:
    records = [f"x,m,{iso(T1)},{files('x1.py', 'x2.py')}", f"y,m,{iso(T1)},{files('y.py')}"]
    await write(store, Endpoint.CHANGES, CHANGES, records, "raw")
    where = "SELECT array_agg(ctid::text ORDER BY ctid) FROM "
    before = [await conn.fetchval(where + t) for t in ("ai_code_changes", "ai_code_change_files")]
    counts = await write(store, Endpoint.CHANGES, CHANGES, records, "raw")
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 2)
    after = [await conn.fetchval(where + t) for t in ("ai_code_changes", "ai_code_change_files")]
    assert after == before
    assert await conn.fetchval("SELECT count(row_digest) FROM ai_code_changes") == 2


async def test_a_reload_finds_its_rows_by_digest_in_each_blocks_span_of_created_at(
    store: Store, conn: asyncpg.Connection
) -> None:
    """Blocks served newest first, as the API serves them: each block's stored rows are found
    through its span of created_at. An edit the digests do not know of shows they were found
    (not typed and compared, which would repair it)."""
    moments = [T1 - timedelta(minutes=n) for n in range(30)]
    blocks = [[f"k{n:02},hello,{iso(moments[n])}" for n in range(b, b + 10)] for b in (0, 10, 20)]
    for records in blocks:
        await write(store, Endpoint.COMMITS, COMMITS, records, "raw")
    await conn.execute("UPDATE ai_commits SET message = 'edited'")
    for records in blocks:
        counts = await write(store, Endpoint.COMMITS, COMMITS, records, "raw")
        assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 10)
    assert await conn.fetchval("SELECT count(*) FROM ai_commits WHERE message = 'edited'") == 30


async def test_rows_outside_a_blocks_span_are_compared_by_value(
    store: Store, conn: asyncpg.Connection
) -> None:
    """A timestamp spelled another way puts the text's order out of time order: the block's
    span (its least and greatest text) then misses the stored row of `a`. That row is typed and
    compared by value instead: its edit is repaired; `b` and `c` are found by their digest."""
    a_text = "2025-07-30T13:30:00.000-03:00"  # 16:30Z: after c, although its text sorts before
    records = [f"a,hello,{a_text}", "b,hello,2025-07-30T13:00:00Z", "c,hello,2025-07-30T14:00:00Z"]
    await write(store, Endpoint.COMMITS, COMMITS, records, "raw")
    await conn.execute("UPDATE ai_commits SET message = 'edited'")
    counts = await write(store, Endpoint.COMMITS, COMMITS, records, "raw")
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 2)
    messages = await conn.fetch("SELECT commit_hash, message FROM ai_commits ORDER BY 1")
    assert [tuple(r) for r in messages] == [("a", "hello"), ("b", "edited"), ("c", "edited")]


async def test_a_bad_created_at_beside_stored_rows_is_quarantined_alone(
    store: Store, conn: asyncpg.Connection
) -> None:
    await write(store, Endpoint.COMMITS, COMMITS, [f"a,hello,{iso(T1)}"], "raw")
    block = raw_batch(Endpoint.COMMITS, COMMITS, [f"a,hello,{iso(T1)}", "b,hello,not-a-time"])
    async with BatchWriter.open(store) as writer:
        counts, _ = await writer.write_raw(block, run_id="r", turn=Turn(advance=True))
    assert (counts.inserted, counts.updated, counts.unchanged, counts.rejected) == (0, 0, 1, 1)
    assert await conn.fetchval("SELECT raw FROM rejected_rows") == "b,hello,not-a-time"
