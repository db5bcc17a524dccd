"""A first load into an empty table builds its secondary indexes (and the file rows' foreign key)
after the rows are in, as pg_restore and pgloader do.

Maintaining four BI indexes and a foreign-key check per file row while rows arrive costs the
server more than building them once at the end. So a pass that starts on an EMPTY endpoint
table (checked under the endpoint's lock and a table lock, never on a table that holds rows)
and reads more than a day sets them aside, and puts them back when it ends, however it ends.

Crash safety needs no bookkeeping: the declared schema (syncer.store.schema) is the record.
Whatever of it is missing — a process killed mid-load — is rebuilt by the next pass of that
endpoint before it syncs (under the same lock, so never while a live process is loading),
and by `syncer migrate`; `syncer status` warns meanwhile (`missing`).
"""

from __future__ import annotations

import asyncpg
import structlog
from sqlalchemy import Index, Table

from syncer.endpoints import Endpoint
from syncer.store.schema import ai_code_change_files, ai_code_changes, ai_commits

log = structlog.get_logger(__name__)

_TABLES: dict[Endpoint, tuple[Table, ...]] = {
    Endpoint.COMMITS: (ai_commits,),
    Endpoint.CHANGES: (ai_code_changes, ai_code_change_files),
}
#: PostgreSQL's own name for the foreign key the first migration declares without one.
FILES_FK = "ai_code_change_files_change_id_fkey"
_ADD_FK = (
    f"ALTER TABLE ai_code_change_files ADD CONSTRAINT {FILES_FK} FOREIGN KEY (change_id) "
    "REFERENCES ai_code_changes (change_id) ON DELETE CASCADE"
)
#: How long setting aside waits for readers of the empty table before giving up on it.
_LOCK_TIMEOUT = "2s"


def _indexes(endpoint: Endpoint) -> list[tuple[str, Index]]:
    """(table, index) of the endpoint's secondary indexes (the keys always stay)."""
    return [
        (t.name, i) for t in _TABLES[endpoint] for i in sorted(t.indexes, key=lambda i: str(i.name))
    ]


def _create(table: str, index: Index) -> str:
    columns = ", ".join(c.name for c in index.columns)
    return f"CREATE INDEX IF NOT EXISTS {index.name} ON {table} ({columns})"


async def missing(conn: asyncpg.Connection, endpoint: Endpoint) -> list[str]:
    """The endpoint's declared secondary indexes (and foreign key) absent from the database.

    Asked by name of the catalog tables themselves: every pass asks, and the `pg_indexes`
    view cost a new session a few milliseconds more to plan.
    """
    declared = [str(i.name) for _, i in _indexes(endpoint)]
    if endpoint is Endpoint.CHANGES:
        declared.append(FILES_FK)
    present = {
        r["name"]
        for r in await conn.fetch(
            "SELECT relname AS name FROM pg_class WHERE relname = ANY($1::text[]) "
            "AND relkind = 'i' AND relnamespace = current_schema()::regnamespace UNION ALL "
            "SELECT conname FROM pg_constraint WHERE conname = ANY($1::text[]) "
            "AND contype = 'f' AND connamespace = current_schema()::regnamespace",
            declared,
        )
    }
    return [name for name in declared if name not in present]


async def restore(conn: asyncpg.Connection, endpoint: Endpoint) -> list[str]:
    """Build whatever of the endpoint's indexes and foreign key is missing; their names.

    Hold the endpoint's lock: a process loading with them set aside holds it too.
    """
    absent = await missing(conn, endpoint)
    if not absent:
        return []
    async with conn.transaction():
        await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")  # sort 1M keys in memory
        for table, index in _indexes(endpoint):
            if index.name in absent:
                await conn.execute(_create(table, index))
        if FILES_FK in absent:
            await conn.execute(_ADD_FK)
    log.info("indexes_built", endpoint=endpoint.value, built=absent)
    return absent


async def set_aside(conn: asyncpg.Connection, endpoint: Endpoint) -> bool:
    """Drop the endpoint's secondary indexes (and foreign key) if its tables are empty.

    Whether it did. Hold the endpoint's lock, and call `restore` when the load ends.
    """
    tables = _TABLES[endpoint]
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        try:
            await conn.execute(
                f"LOCK TABLE {', '.join(t.name for t in tables)} IN ACCESS EXCLUSIVE MODE"
            )
        except asyncpg.LockNotAvailableError:
            return False  # someone is reading it: load the ordinary way
        held = " OR ".join(f"EXISTS (SELECT FROM {t.name})" for t in tables)
        if await conn.fetchval(f"SELECT {held}"):
            return False  # never on a table that holds rows
        if endpoint is Endpoint.CHANGES:
            await conn.execute(
                f"ALTER TABLE ai_code_change_files DROP CONSTRAINT IF EXISTS {FILES_FK}"
            )
        for _, index in _indexes(endpoint):
            await conn.execute(f"DROP INDEX IF EXISTS {index.name}")
    log.info("indexes_set_aside", endpoint=endpoint.value)
    return True
