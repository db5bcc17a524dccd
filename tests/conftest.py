"""Shared fixtures: a real PostgreSQL (never mocked) with a fresh, migrated database per session."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from syncer.store.db import create_engine, migrate, to_libpq_url

SYNCED_TABLES = (
    "ai_code_change_files",
    "ai_code_changes",
    "ai_commits",
    "sync_state",
    "sync_runs",
    "rejected_rows",
    "rate_budget",
)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A libpq URL of a server we may create databases on.

    TEST_DATABASE_URL if set, else the local server on 127.0.0.1:5432 if reachable, else an
    embedded PostgreSQL of the test session's own (stopped afterwards).
    """
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield to_libpq_url(url)
        return
    if _reachable("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
        return
    from syncer.store.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(Path(tempfile.gettempdir()) / f"syncer-test-pg-{os.getuid()}")
    embedded.start()
    try:
        yield embedded.url("postgres")
    finally:
        embedded.stop()


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
async def new_database(server_url: str) -> AsyncIterator[object]:
    """A factory of empty databases on the test server, all dropped at the end of the session."""
    created: list[str] = []

    async def make() -> str:
        name = f"syncer_test_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        created.append(name)
        return _with_database(server_url, name)

    yield make
    admin = await asyncpg.connect(server_url)
    try:
        for name in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(new_database: object) -> str:
    """A fresh database for this test session, migrated to head with Alembic."""
    url: str = await new_database()  # type: ignore[operator]
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's migrated database."""
    eng = create_engine(database_url)
    yield eng
    await eng.dispose()


@pytest.fixture
async def clean_db(engine: AsyncEngine, database_url: str) -> str:
    """The session database with every synced table emptied before the test."""
    async with engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text(f"TRUNCATE {', '.join(SYNCED_TABLES)} RESTART IDENTITY CASCADE"))
    return database_url
