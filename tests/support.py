"""Helpers the engine tests share: settings and environments for the simulator, the run log,
and `syncer` as a subprocess. Test modules import from here, never from each other."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from syncer.config import Settings
from syncer.fakeapi import FakeApi, FakeApiConfig
from syncer.store.db import to_libpq_url


def settings_for(sim: FakeApi, url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "CURSOR_API_KEY": sim.config.api_key,
        "CURSOR_API_BASE_URL": sim.url,
        "DATABASE_URL": url,
        "CURSOR_RATE_LIMIT_REQUESTS": 1000,
        "CURSOR_RATE_LIMIT_PERIOD_SECONDS": 1,
        "CURSOR_MAX_RETRIES": 2,
        "SYNC_START": "30d",
        "SYNC_LOG_FORMAT": "json",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def env_for(sim: FakeApi, url: str, **overrides: str) -> dict[str, str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("CURSOR_", "SYNC_", "DATABASE_"))
    }
    return {
        **base,
        "CURSOR_API_KEY": sim.config.api_key,
        "CURSOR_API_BASE_URL": sim.url,
        "DATABASE_URL": to_libpq_url(url),
        "CURSOR_RATE_LIMIT_REQUESTS": "1000",
        "CURSOR_RATE_LIMIT_PERIOD_SECONDS": "1",
        "SYNC_LOG_FORMAT": "json",
        **overrides,
    }


def sim_config(**overrides: Any) -> FakeApiConfig:
    values: dict[str, Any] = {
        "commits": 600,
        "changes": 400,
        "days": 20,
        "seed": 7,
        "rate_limit_requests": 1000,
        "rate_limit_period": 1.0,
    }
    values.update(overrides)
    return FakeApiConfig(**values)


async def last_runs(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(to_libpq_url(url))
    try:
        return await conn.fetch("SELECT * FROM sync_runs ORDER BY id")
    finally:
        await conn.close()


async def run_syncer(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncer",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )


async def start_backfill(env: dict[str, str], stderr: Path) -> asyncio.subprocess.Process:
    with stderr.open("wb") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncer", "backfill", "--since", "25d", "--endpoint", "commits",
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )  # fmt: skip


async def wait_until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    for _ in range(3000):
        if value := await check():
            return value
        await asyncio.sleep(0.02)
    pytest.fail(f"gave up waiting for {what}")


def client_settings(url: str, key: str = "demo-key", **overrides: Any) -> Settings:
    """Settings for a client alone (no database) talking to the API at `url`, limits generous."""
    values: dict[str, Any] = {
        "CURSOR_API_KEY": key,
        "CURSOR_API_BASE_URL": url,
        "CURSOR_RATE_LIMIT_REQUESTS": 1000,
        "CURSOR_RATE_LIMIT_PERIOD_SECONDS": 1,
        **overrides,
    }
    return Settings(_env_file=None, **values)
