"""`BatchWriter`: one connection's hot path — stage, upsert, replace files, quarantine, mark.

It speaks asyncpg directly. The typed path stages parsed rows by binary COPY, then one
set-based upsert per batch; the raw path (syncer.store.rawsql) stages the CSV bytes and lets
the server type them, falling back to the typed path for a block it cannot read alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from syncer.endpoints import Endpoint
from syncer.errors import DatabaseError
from syncer.parse.rows import Row
from syncer.store.batch import Batch, BatchCounts, RawBatch, Turn, later
from syncer.store.rawsql import apply_raw, guarded_upsert, prepare_raw, stage_ddl
from syncer.store.schema import ai_code_change_files

log = structlog.get_logger(__name__)

_COMMIT_COLS = [c.name for c in Endpoint.COMMITS.columns]
_CHANGE_COLS = [c.name for c in Endpoint.CHANGES.columns if c.name != "metadata_json"]
_FILE_COLS = [c.name for c in ai_code_change_files.columns]
#: Failures of the database or of the connection to it.
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def _stage_ddl(table: str, columns: str) -> str:
    # Created once per writing connection; every commit empties it.
    return f"CREATE TEMP TABLE IF NOT EXISTS {table} ({columns}) ON COMMIT DELETE ROWS"


_STAGE_COMMITS = _stage_ddl(
    "stage_commits",
    "commit_hash text, user_id text, user_email text, repo_name text, branch_name text, "
    "is_primary_branch boolean, total_lines_added bigint, total_lines_deleted bigint, "
    "tab_lines_added bigint, tab_lines_deleted bigint, composer_lines_added bigint, "
    "composer_lines_deleted bigint, non_ai_lines_added bigint, non_ai_lines_deleted bigint, "
    "message text, commit_ts timestamptz, created_at timestamptz, extra text",
)
_STAGE_CHANGES = _stage_ddl(
    "stage_changes",
    "change_id text, user_id text, user_email text, source text, model text, "
    "total_lines_added bigint, total_lines_deleted bigint, created_at timestamptz, "
    "extra text, files text",
)


# Both paths define the digest alike (see syncer.store.rawsql): md5 of the file list's jsonb text.
_SELECT = {"extra": "extra::jsonb", "files_digest": "md5(files::jsonb::text)"}


_UPSERT_COMMITS = (
    "WITH up AS ("
    + guarded_upsert(
        Endpoint.COMMITS, [*_COMMIT_COLS, "extra"], "stage_commits", "(xmax = 0) AS ins", _SELECT
    )
    + ") SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM up"
)
_UPSERT_CHANGES = (
    "WITH up AS ("
    + guarded_upsert(
        Endpoint.CHANGES,
        [*_CHANGE_COLS, "extra", "files_digest"],
        "stage_changes",
        "change_id, (xmax = 0) AS ins",
        _SELECT,
    )
    + ") SELECT change_id, ins FROM up"
)
_STAGE_RAW = "; ".join(stage_ddl(endpoint) for endpoint in Endpoint)
#: Every staging table a writing connection needs (created once per connection).
STAGE_DDL = f"{_STAGE_COMMITS}; {_STAGE_CHANGES}; {_STAGE_RAW}"
_SAVE_REJECTED = (
    "INSERT INTO rejected_rows (endpoint, raw, reason, raw_digest, run_id) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (endpoint, raw_digest) DO UPDATE "
    "SET last_seen = now(), times_seen = rejected_rows.times_seen + 1, "
    "reason = EXCLUDED.reason, run_id = EXCLUDED.run_id"
)
_ADVANCE_MARK = (
    "INSERT INTO sync_state (endpoint, high_water_mark) VALUES ($1, $2) "
    "ON CONFLICT (endpoint) DO UPDATE SET updated_at = now(), high_water_mark = "
    "GREATEST(sync_state.high_water_mark, EXCLUDED.high_water_mark)"
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


class BatchWriter:
    """Writes batches on one connection: stage by COPY, upsert, replace files, quarantine."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def write(
        self,
        batch: Batch,
        *,
        run_id: str,
        mark: datetime | None = None,
        advance: bool = False,
        turn: Turn | None = None,
    ) -> BatchCounts:
        """Upsert a batch in one transaction; with `mark`, advance the high-water mark in it too.

        With `turn`, the upsert waits for it (the previous batch's commit); with `advance`,
        the mark becomes the greater of what `turn` returns and the batch's newest.
        """
        conn = self._conn
        try:
            async with conn.transaction():
                if turn is not None:
                    floor = await turn()
                    if advance:
                        mark = later(floor, batch.newest)
                counts = await self._upsert(batch)
                counts.rejected = await self._quarantine(batch, run_id)
                if mark is not None:
                    await conn.execute(_ADVANCE_MARK, batch.endpoint.value, mark)
        except DB_ERRORS as exc:
            raise DatabaseError(
                f"{batch.endpoint.value}: writing a batch failed: {reason(exc)}"
            ) from exc
        return counts

    async def write_raw(
        self,
        raw: RawBatch,
        *,
        run_id: str,
        mark: datetime | None = None,
        advance: bool = False,
        turn: Turn | None = None,
    ) -> tuple[BatchCounts, datetime | None]:
        """Upsert a block the raw way; on any error in it, the typed way (which quarantines
        each bad row). Returns the counts and the block's newest created_at.

        The block is staged and typed first, then `turn` is awaited (the previous batch's
        commit, on another connection), then the rows are upserted. With `advance`, the mark
        moves in the same transaction to the greatest of `mark`, what `turn` returned and
        the block's newest.
        """
        conn = self._conn
        endpoint = raw.endpoint
        waited = False

        async def wait_turn() -> datetime | None:
            nonlocal waited
            waited = True
            return await turn() if turn is not None else None

        try:
            async with conn.transaction():
                try:
                    async with conn.transaction():  # a savepoint: a failed block rolls back alone
                        await prepare_raw(conn, endpoint, raw.columns, raw.block.data)
                        floor = await wait_turn()
                        rows, inserted, updated, newest = await apply_raw(conn, endpoint)
                    counts = BatchCounts(inserted, updated, rows - inserted - updated)
                except asyncpg.PostgresError as exc:
                    log.info("raw_block_read_typed", endpoint=endpoint.value, reason=reason(exc))
                    batch = Batch.parse(endpoint, raw.block)
                    if not waited:
                        floor = await wait_turn()
                    counts = await self._upsert(batch)
                    counts.rejected = await self._quarantine(batch, run_id)
                    newest = batch.newest
                target = later(later(mark, floor), newest)
                if advance and target is not None:
                    await conn.execute(_ADVANCE_MARK, endpoint.value, target)
        except DB_ERRORS as exc:
            raise DatabaseError(f"{endpoint.value}: writing a batch failed: {reason(exc)}") from exc
        return counts, newest

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
                "ai_code_change_files", records=files, columns=_FILE_COLS
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


def reason(exc: BaseException) -> str:
    """The first line of what the driver said about a failure."""
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return message
