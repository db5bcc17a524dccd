"""`BatchWriter`: one connection's hot path — stage, upsert, replace files, quarantine, mark.

It speaks asyncpg directly. The typed path stages parsed rows by binary COPY, then one
set-based upsert per batch; the raw path (syncer.store.rawsql) stages the CSV bytes and lets
the server type them, falling back to the typed path for a block it cannot read alike.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from syncer.endpoints import Endpoint, Kind
from syncer.parse.rows import Row
from syncer.results import BatchCounts
from syncer.store.batch import Batch, RawBatch
from syncer.store.db import DB_ERRORS, database_error, reason
from syncer.store.mark import ADVANCE_MARK, ALONE, Turn, new_mark
from syncer.store.rawsql import (
    FILE_COLUMNS,
    apply_raw,
    guarded_upsert,
    prepare_raw,
    stage_ddl,
)
from syncer.store.rawtypes import typed_columns
from syncer.store.store import Store

log = structlog.get_logger(__name__)

_COMMIT_COLS = [c.name for c in Endpoint.COMMITS.columns]
_CHANGE_COLS = [c.name for c in Endpoint.CHANGES.columns if c.kind is not Kind.FILES]


def _stage_ddl(table: str, endpoint: Endpoint, more: str) -> str:
    # The parsed row's fields in CSV order, then `more`; created once per writing connection,
    # every commit empties it.
    return (
        f"CREATE TEMP TABLE IF NOT EXISTS {table} ({typed_columns(endpoint)}, {more}) "
        "ON COMMIT DELETE ROWS"
    )


_STAGE_COMMITS = _stage_ddl("stage_commits", Endpoint.COMMITS, "extra text")
_STAGE_CHANGES = _stage_ddl("stage_changes", Endpoint.CHANGES, "extra text, files text")


# Both paths define the digest alike (see syncer.store.rawsql): md5 of the file list's jsonb text.
# The typed path keeps no metadata text: its file rows are never kept by a later reload.
_SELECT = {
    "extra": "extra::jsonb",
    "files_digest": "md5(files::jsonb::text)",
    "metadata_digest": "NULL::text",
    "row_digest": "NULL::text",  # nor the record's text: a later reload compares values
}


_UPSERT_COMMITS = (
    "WITH up AS ("
    + guarded_upsert(
        Endpoint.COMMITS,
        [*_COMMIT_COLS, "extra", "row_digest"],
        "stage_commits",
        "(xmax = 0) AS ins",
        _SELECT,
        carried=("row_digest",),
    )
    + ") SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM up"
)
_UPSERT_CHANGES = (
    "WITH up AS ("
    + guarded_upsert(
        Endpoint.CHANGES,
        [*_CHANGE_COLS, "extra", "files_digest", "metadata_digest", "row_digest"],
        "stage_changes",
        "change_id, (xmax = 0) AS ins",
        _SELECT,
        carried=("metadata_digest", "row_digest"),
    )
    + ") SELECT change_id, ins FROM up"
)
#: The staging tables of each way of writing an endpoint: a connection creates the ones it
#: uses, when it first uses them (temporary tables cost catalog writes to create, and every
#: commit empties each of them, so a short pass should not pay for all eight).
_STAGE_DDL = {
    (False, Endpoint.COMMITS): _STAGE_COMMITS,
    (False, Endpoint.CHANGES): _STAGE_CHANGES,
    **{(True, endpoint): stage_ddl(endpoint) for endpoint in Endpoint},
}
_SAVE_REJECTED = (
    "INSERT INTO rejected_rows (endpoint, raw, reason, raw_digest, run_id) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (endpoint, raw_digest) DO UPDATE "
    "SET last_seen = now(), times_seen = rejected_rows.times_seen + 1, "
    "reason = EXCLUDED.reason, run_id = EXCLUDED.run_id"
)


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _commit_records(rows: Iterable[Row]) -> list[tuple[Any, ...]]:
    # A parsed commit row is already the staging record when it carries no extra columns.
    return [row if row[-1] is None else (*row[:-1], _json(row[-1])) for row in rows]


def _files_json(files: tuple[Any, ...]) -> str:
    return json.dumps([list(entry) for entry in files], ensure_ascii=False)


def _change_records(rows: Iterable[Row]) -> list[tuple[Any, ...]]:
    return [(*row[:8], _json(row[9]), _files_json(row[8])) for row in rows]


def _file_records(change_id: str, files: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return [
        (change_id, index, name, ext, added, deleted, _json(extra))
        for index, (name, ext, added, deleted, extra) in enumerate(files)
    ]


#: The staging tables known to exist, per connection: a session keeps its temporary tables,
#: and a pooled connection serves many windows (a daemon's passes, each with a new writer).
_STAGED: weakref.WeakKeyDictionary[asyncpg.Connection, set[tuple[bool, Endpoint]]] = (
    weakref.WeakKeyDictionary()
)


class BatchWriter:
    """Writes batches on one connection: stage by COPY, upsert, replace files, quarantine."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._staged = _STAGED.setdefault(conn, set())

    @classmethod
    @asynccontextmanager
    async def open(
        cls, store: Store, *, stage: tuple[bool, Endpoint] | None = None
    ) -> AsyncIterator[BatchWriter]:
        """A connection of `store` held for a stream of batches (one window), with the
        staging tables of `stage` (raw or typed, endpoint) made ready at once.

        Holding it saves a pool checkout and the staging DDL per batch: round trips matter
        here, because the parser shares the event loop and each one waits for a chunk.
        """
        async with store.raw() as conn:
            writer = cls(conn)
            if stage is not None:
                await writer._stage_tables(*stage)
            yield writer

    async def _stage_tables(self, raw: bool, endpoint: Endpoint) -> None:
        """Create the staging tables of one way of writing an endpoint, outside any
        transaction (a rolled-back batch must not take them with it)."""
        if (raw, endpoint) in self._staged:
            return
        try:
            await self._conn.execute(_STAGE_DDL[raw, endpoint])
        except DB_ERRORS as exc:
            raise database_error("preparing to write failed", exc) from exc
        self._staged.add((raw, endpoint))

    async def write(self, batch: Batch, *, run_id: str, turn: Turn = ALONE) -> BatchCounts:
        """Upsert a batch in one transaction, once `turn` comes; the mark moves in it too when
        the turn carries it (see syncer.store.mark)."""
        conn = self._conn
        if batch.rows:
            await self._stage_tables(False, batch.endpoint)
        try:
            async with conn.transaction():
                so_far = await turn.wait()
                counts = await self._upsert(batch)
                counts.rejected = await self._quarantine(batch, run_id)
                await self._advance(batch.endpoint, so_far, batch.newest, turn)
        except DB_ERRORS as exc:
            raise database_error(f"{batch.endpoint.value}: writing a batch failed", exc) from exc
        return counts

    async def write_raw(
        self, raw: RawBatch, *, run_id: str, turn: Turn = ALONE
    ) -> tuple[BatchCounts, datetime | None]:
        """Upsert a block the raw way; on any error in it, the typed way (which quarantines
        each bad row). Returns the counts and the block's newest created_at.

        The block is staged and typed first, then `turn` is awaited (the previous batch's
        commit, on another connection), then the rows are upserted and, when the turn carries
        it, the mark moved in the same transaction.
        """
        conn = self._conn
        endpoint = raw.endpoint
        waited = False
        await self._stage_tables(True, endpoint)

        async def wait_turn() -> datetime | None:
            nonlocal waited
            waited = True
            return await turn.wait()

        try:
            async with conn.transaction():
                try:
                    async with conn.transaction():  # a savepoint: a failed block rolls back alone
                        await prepare_raw(
                            conn, endpoint, raw.columns, raw.block.data, look_up=not raw.fresh
                        )
                        so_far = await wait_turn()
                        rows, inserted, updated, newest = await apply_raw(
                            conn, endpoint, look_up=not raw.fresh
                        )
                    counts = BatchCounts(inserted, updated, rows - inserted - updated)
                except asyncpg.PostgresError as exc:
                    log.info("raw_block_read_typed", endpoint=endpoint.value, reason=reason(exc))
                    batch = Batch.parse(endpoint, raw.block)
                    # inside the block's transaction: not remembered, IF NOT EXISTS next time
                    await conn.execute(_STAGE_DDL[False, endpoint])
                    if not waited:
                        so_far = await wait_turn()
                    counts = await self._upsert(batch)
                    counts.rejected = await self._quarantine(batch, run_id)
                    newest = batch.newest
                await self._advance(endpoint, so_far, newest, turn)
        except DB_ERRORS as exc:
            raise database_error(f"{endpoint.value}: writing a batch failed", exc) from exc
        return counts, newest

    async def _advance(
        self, endpoint: Endpoint, so_far: datetime | None, newest: datetime | None, turn: Turn
    ) -> None:
        mark = new_mark(so_far, newest, advance=turn.advance)
        if mark is not None:
            await self._conn.execute(ADVANCE_MARK, endpoint.value, mark)

    async def _upsert(self, batch: Batch) -> BatchCounts:
        if not batch.rows:
            return BatchCounts()
        if batch.endpoint is Endpoint.COMMITS:
            await self._conn.copy_records_to_table(
                "stage_commits", records=_commit_records(batch.rows.values())
            )
            inserted, updated = await self._conn.fetchrow(_UPSERT_COMMITS)
        else:
            inserted, updated = await self._upsert_changes(batch.rows)
        return BatchCounts(inserted, updated, len(batch.rows) - inserted - updated)

    async def _upsert_changes(self, rows: dict[str, Row]) -> tuple[int, int]:
        conn = self._conn
        await conn.copy_records_to_table("stage_changes", records=_change_records(rows.values()))
        written = await conn.fetch(_UPSERT_CHANGES)
        # Only changes that were inserted or really changed get their file rows replaced.
        updated = [r["change_id"] for r in written if not r["ins"]]
        if updated:
            await conn.execute(
                "DELETE FROM ai_code_change_files WHERE change_id = ANY($1::text[])", updated
            )
        files = [
            rec for r in written for rec in _file_records(r["change_id"], rows[r["change_id"]][8])
        ]
        if files:
            await conn.copy_records_to_table(
                "ai_code_change_files", records=files, columns=FILE_COLUMNS
            )
        return len(written) - len(updated), len(updated)

    async def _quarantine(self, batch: Batch, run_id: str) -> int:
        if not batch.rejected:
            return 0
        await self._conn.executemany(
            _SAVE_REJECTED,
            [
                (
                    batch.endpoint.value,
                    r.raw.replace("\x00", "\\x00"),
                    r.reason,
                    hashlib.sha256(r.raw.encode("utf-8", "replace")).hexdigest(),
                    run_id,
                )
                for r in batch.rejected
            ],
        )
        return len(batch.rejected)
