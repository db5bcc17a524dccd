"""A change re-served with the metadata text its file rows were typed from keeps them unparsed
(the raw path's `metadata_digest`), and never keeps files that another batch replaced since."""

from __future__ import annotations

import asyncpg
import structlog

from syncer.endpoints import Endpoint
from syncer.parse.blocks import raw_columns
from syncer.store.batch import RawBatch
from syncer.store.store import Store
from syncer.store.writer import BatchWriter
from tests.csvpath import raw_block
from tests.store.support import overtaken

HEADER = ",".join(c.name for c in Endpoint.CHANGES.columns)
CREATED = "2025-07-31T00:00:00Z"
A_PY = '[{"fileName":"a.py","fileExtension":"py","linesAdded":1,"linesDeleted":0}]'
B_PY = '[{"fileName":"b.py","fileExtension":"py","linesAdded":2,"linesDeleted":1}]'


def block(*records: tuple[str, str, str]) -> RawBatch:
    """A raw block of changes: (change_id, model, metadata text) each."""
    quoted = ['"' + metadata.replace('"', '""') + '"' for _, _, metadata in records]
    lines = [
        f"{key},u1,a@b.c,TAB,{model},1,2,{CREATED},{text}\n"
        for (key, model, _), text in zip(records, quoted, strict=True)
    ]
    data = "".join(lines).encode()
    raw = raw_block(HEADER, data)
    columns = raw_columns(Endpoint.CHANGES, raw.names)
    assert columns is not None
    assert raw.plain
    return RawBatch(Endpoint.CHANGES, columns, raw)


async def files_of(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
    rows = await conn.fetch(
        "SELECT change_id, file_name, ctid::text AS at FROM ai_code_change_files ORDER BY 1, 2"
    )
    return [(r["change_id"], r["file_name"], r["at"]) for r in rows]


async def test_a_change_whose_other_columns_change_keeps_its_file_rows(
    store: Store, conn: asyncpg.Connection
) -> None:
    async with BatchWriter.open(store) as writer:
        await writer.write_raw(block(("c1", "gpt", A_PY), ("c2", "gpt", B_PY)), run_id="r")
        before = await files_of(conn)
        counts, _ = await writer.write_raw(
            block(("c1", "claude", A_PY), ("c2", "gpt", B_PY)), run_id="r"
        )
        assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 1)
        assert await files_of(conn) == before, "no file row deleted or rewritten"
        counts, _ = await writer.write_raw(block(("c1", "claude", B_PY)), run_id="r")
        assert counts.updated == 1
    after = await files_of(conn)
    assert [(key, name) for key, name, _ in after] == [("c1", "b.py"), ("c2", "b.py")]
    model = await conn.fetchval("SELECT model FROM ai_code_changes WHERE change_id = 'c1'")
    assert model == "claude"


async def test_files_replaced_while_a_block_waited_for_its_turn_are_not_kept(
    store: Store, conn: asyncpg.Connection
) -> None:
    """Block 2 is staged (and keeps c1's files: the stored text is still its own) while block 1,
    staged earlier, waits; then block 1 replaces c1's files and commits. Block 2 must not keep
    the files it saw, which are gone: it is read the typed way, and c1 ends with its row and
    its files."""
    async with BatchWriter.open(store) as writer:
        await writer.write_raw(block(("c1", "gpt", A_PY)), run_id="r")
    with structlog.testing.capture_logs() as logs:
        # block 2 differs in its model, so its files are kept, not the whole row left alone
        await overtaken(store, block(("c1", "gpt", B_PY)), block(("c1", "claude", A_PY)))
    assert [(key, name) for key, name, _ in await files_of(conn)] == [("c1", "a.py")]
    assert [e["event"] for e in logs] == ["raw_block_read_typed"]
    assert "c1" in logs[0]["reason"], "the error names the change"
    # the stored digest describes the stored files again: a reload changes nothing
    model = await conn.fetchval("SELECT model FROM ai_code_changes WHERE change_id = 'c1'")
    assert model == "claude"
    async with BatchWriter.open(store) as writer:
        counts, _ = await writer.write_raw(block(("c1", "claude", A_PY)), run_id="r")
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 1)
