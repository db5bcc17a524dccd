"""`Store`: the database side of a sync — the endpoint lock, writers, sync state, the run log.

The hot path (staged COPY upserts, child-row replacement, quarantine, the mark) is
`BatchWriter` in syncer.store.writer, on asyncpg directly, on a connection it takes from the
store (`BatchWriter.open(store)`). A pass's own bookkeeping (the mark, its run-log row, a first
load's indexes) runs on the connection that holds its endpoint's lock (`LockedEndpoint`), also
in plain SQL: a short pass is mostly these few statements, and each pool checkout or implicit
transaction around them was a round trip more. The rest goes through SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import structlog
from sqlalchemy import func, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from syncer.endpoints import Endpoint
from syncer.errors import DatabaseError, DatabaseReadOnly, EndpointBusy
from syncer.results import BatchCounts, Outcome
from syncer.store import deferred
from syncer.store.db import (
    DB_ERRORS,
    create_engine,
    database_error,
    reason,
    redact,
    to_libpq_url,
)
from syncer.store.schema import sync_runs

log = structlog.get_logger(__name__)
T = TypeVar("T")

_MARK = "SELECT high_water_mark FROM sync_state WHERE endpoint = $1"
#: A pass's run-log row; an older one of the endpoint still `running` was left by a process
#: that died: it is marked abandoned in the same statement.
_START_RUN = (
    f"WITH stale AS (UPDATE sync_runs SET outcome = '{Outcome.ABANDONED.value}', "
    f"finished_at = now() WHERE endpoint = $2 AND outcome = '{Outcome.RUNNING.value}') "
    "INSERT INTO sync_runs (run_id, endpoint, command, window_start, window_end, outcome) "
    f"VALUES ($1, $2, $3, $4, $5, '{Outcome.RUNNING.value}') RETURNING id"
)


def _lock_key(endpoint: Endpoint) -> int:
    return 0x5359_0000_0000 + zlib.crc32(f"syncer:{endpoint.value}".encode())


async def _unlock(conn: asyncpg.Connection, key: int) -> None:
    """Release an endpoint's lock; on a connection that cannot (the server went away mid-pass,
    a query left in flight), end the session instead, which releases it as surely: a pooled
    session must never keep the lock."""
    if conn.is_closed():
        return
    try:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)
    except Exception:  # noqa: BLE001 - any failure here: the session goes, and the lock with it
        conn.terminate()


class Store:
    """The database side of a sync: owns its engine; use as `async with Store.connect(url)`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[Store]:
        """Open a store on `url` and check the database answers; dispose of the pool on exit."""
        engine = create_engine(url)
        store = cls(engine)
        try:
            try:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            except Exception as exc:  # noqa: BLE001 - any driver error means "unreachable"
                raise DatabaseError(
                    f"cannot connect to {redact(to_libpq_url(url))}: {reason(exc)}"
                ) from None
            yield store
        finally:
            await engine.dispose()

    @asynccontextmanager
    async def raw(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection outside any SQLAlchemy transaction."""
        try:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                proxied = await conn.get_raw_connection()
                yield proxied.driver_connection
        except (*DB_ERRORS, SQLAlchemyError) as exc:  # the pool's connect raises the latter
            raise await self._failed(database_error("database error", exc)) from exc
        except DatabaseReadOnly:  # raised by what ran on this connection (a writer)
            await self._drop_pool()
            raise

    async def _failed(self, error: DatabaseError) -> DatabaseError:
        """Return `error`; when the server refuses writes, drop the pooled connections first.

        A session keeps the read-only state it started with (default_transaction_read_only set
        on the database, a demoted primary behind the same address): only new connections see
        the server writable again, so recovery needs a fresh pool, not a restart.
        """
        if isinstance(error, DatabaseReadOnly):
            await self._drop_pool()
        return error

    async def _drop_pool(self) -> None:
        """Close the pooled connections; shielded, so a caller's timeout (the rate budget's)
        cannot cancel it halfway through closing one, which the pool reports as a traceback."""
        await asyncio.shield(self.engine.dispose())

    # -- locking -------------------------------------------------------------------------

    @asynccontextmanager
    async def endpoint_lock(
        self, endpoint: Endpoint, *, wait: bool
    ) -> AsyncIterator[LockedEndpoint]:
        """Hold the endpoint's advisory lock: one writer per endpoint across all processes.

        With `wait=False`, raise EndpointBusy at once when another process holds it.
        The lock is tied to a connection, so a crashed holder releases it automatically;
        the holder's bookkeeping runs on that connection (see `LockedEndpoint`).
        """
        async with self.raw() as conn:
            key = _lock_key(endpoint)
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                if not wait:
                    raise EndpointBusy(f"{endpoint.value}: another syncer process is syncing it")
                log.info("endpoint_lock_wait", endpoint=endpoint.value)
                await conn.execute("SELECT pg_advisory_lock($1)", key)
            try:
                yield LockedEndpoint(self, conn, endpoint)
            finally:
                await _unlock(conn, key)

    async def missing_indexes(self, endpoint: Endpoint) -> list[str]:
        """The endpoint's declared indexes (and foreign key) that are missing now."""
        async with self.raw() as conn:
            return await deferred.missing(conn, endpoint)

    # -- state and run log -------------------------------------------------------------------

    async def high_water_mark(self, endpoint: Endpoint) -> datetime | None:
        """The stored mark of an endpoint, None before its first complete window."""
        async with self.raw() as conn:
            mark: datetime | None = await conn.fetchval(_MARK, endpoint.value)
            return mark

    async def log_skipped(self, run_id: str, endpoint: Endpoint, command: str, reason: str) -> None:
        """Record a pass that did not run because the endpoint was busy."""
        async with self._sql(begin=True) as conn:
            await conn.execute(
                sync_runs.insert().values(
                    run_id=run_id,
                    endpoint=endpoint.value,
                    command=command,
                    outcome=Outcome.SKIPPED.value,
                    finished_at=func.now(),
                    error=reason,
                )
            )

    @asynccontextmanager
    async def _sql(self, *, begin: bool = False) -> AsyncIterator[Any]:
        try:
            if begin:
                async with self.engine.begin() as conn:
                    yield conn
            else:
                async with self.engine.connect() as conn:
                    yield conn
        except DB_ERRORS as exc:
            raise await self._failed(database_error("database error", exc)) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("sqlalchemy"):
                raise await self._failed(database_error("database error", exc)) from exc
            raise


class LockedEndpoint:
    """A pass's bookkeeping on the connection that holds its endpoint's lock (autocommit):
    the mark, its run-log row, a first load's indexes (syncer.store.deferred)."""

    def __init__(self, store: Store, conn: asyncpg.Connection, endpoint: Endpoint) -> None:
        self._store = store
        self._conn = conn
        self.endpoint = endpoint

    async def high_water_mark(self) -> datetime | None:
        """The endpoint's stored mark, None before its first complete window."""
        mark: datetime | None = await self._run(lambda c: c.fetchval(_MARK, self.endpoint.value))
        return mark

    async def start_run(self, run_id: str, command: str, start: datetime, end: datetime) -> int:
        """Insert the pass's run-log row (outcome running); the id of that row."""
        values = (run_id, self.endpoint.value, command, start, end)
        return int(await self._run(lambda c: c.fetchval(_START_RUN, *values)))

    async def finish_run(self, row_id: int, **values: Any) -> datetime | None:
        """Record how the pass ended (outcome, counts, error) with the endpoint's mark now;
        that mark. Should the lock's connection be gone (the server restarted), on another."""
        names = list(values)
        sql = (
            "UPDATE sync_runs SET finished_at = now(), high_water_mark = (SELECT "
            "high_water_mark FROM sync_state WHERE endpoint = sync_runs.endpoint), "
            + ", ".join(f"{name} = ${n}" for n, name in enumerate(names, start=2))
            + " WHERE id = $1 RETURNING high_water_mark"
        )
        args = [values[name] for name in names]
        mark: datetime | None = await self._run(lambda c: c.fetchval(sql, row_id, *args), anew=True)
        return mark

    async def set_indexes_aside(self) -> bool:
        """Drop the endpoint's secondary indexes if its tables are empty; whether it did.
        `restore_indexes` when the load ends."""
        return await self._run(lambda c: deferred.set_aside(c, self.endpoint))

    async def restore_indexes(self) -> list[str]:
        """Build whatever of the endpoint's declared indexes is missing."""
        return await self._run(lambda c: deferred.restore(c, self.endpoint))

    async def _run(
        self, statement: Callable[[asyncpg.Connection], Awaitable[T]], *, anew: bool = False
    ) -> T:
        try:
            return await statement(self._conn)
        except DB_ERRORS as exc:
            if not anew:
                raise database_error("database error", exc) from exc
        async with self._store.raw() as conn:  # converts a failure (and drops a read-only pool)
            return await statement(conn)


__all__: Sequence[str] = ("BatchCounts", "LockedEndpoint", "Outcome", "Store")
