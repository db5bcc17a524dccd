"""Fixtures of the daemon tests: daemons killed at the end, and databases they must migrate."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.daemon.support import Daemon


@pytest.fixture
async def daemons(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Daemon]]]:
    """A factory of daemons, every one killed at the end if still running."""
    started: list[Daemon] = []

    async def start(api_url: str, database_url: str, **env: str) -> Daemon:
        daemon = await Daemon.start(tmp_path, api_url, database_url, **env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        await daemon.kill()


@pytest.fixture
async def fresh_db(new_database: Callable[[], Awaitable[str]]) -> str:
    """An empty database: the daemon must migrate it itself."""
    return await new_database()
