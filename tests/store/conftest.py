"""Fixtures of the store tests: a Store and a plain connection on the emptied test database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from syncer.store.db import to_libpq_url
from syncer.store.store import Store


@pytest.fixture
async def store(clean_db: str) -> AsyncIterator[Store]:
    async with Store.connect(clean_db) as s:
        yield s


@pytest.fixture
async def conn(clean_db: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(to_libpq_url(clean_db))
    yield c
    await c.close()
