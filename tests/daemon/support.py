"""`syncer run` as a real subprocess, and what the daemon tests share to drive and watch it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from time import monotonic
from typing import Any, BinaryIO

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi, FakeApiConfig
from syncer.store.db import to_libpq_url

KEY = "test-key-7f3a9c1e5b"


SETTINGS_VARIABLES = {str(f.validation_alias).upper() for f in Settings.model_fields.values()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(**variables: str) -> dict[str, str]:
    """The process environment without ambient syncer settings, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARIABLES}
    env.update(variables)
    return env


def simulator(**config: Any) -> FakeApi:
    defaults: dict[str, Any] = dict(
        api_key=KEY, commits=300, changes=300, days=3, seed=5,
        rate_limit_requests=20, rate_limit_period=2.0,
    )  # fmt: skip
    return FakeApi(FakeApiConfig(**{**defaults, **config}))


def _log_file(path: Path) -> BinaryIO:
    return path.open("wb")


class Daemon:
    """A `syncer run` subprocess, its HTTP port and its JSON log."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @classmethod
    async def start(cls, tmp_path: Path, api_url: str, database_url: str, **env: str) -> Daemon:
        port = free_port()
        log_path = tmp_path / f"daemon-{port}.log"
        variables = {
            "CURSOR_API_KEY": KEY,
            "CURSOR_API_BASE_URL": api_url,
            "DATABASE_URL": database_url,
            "SYNC_INTERVAL": "1s",
            "SYNC_START": "5d",
            "SYNC_HTTP_HOST": "127.0.0.1",
            "SYNC_HTTP_PORT": str(port),
            "SYNC_HEALTHY_INTERVALS": "2",
            "SYNC_SHUTDOWN_TIMEOUT": "5s",
            "SYNC_LOG_FORMAT": "json",
            "CURSOR_MAX_RETRIES": "1",
            "CURSOR_CONNECT_TIMEOUT": "2s",
            "CURSOR_RATE_LIMIT_REQUESTS": "20",
            "CURSOR_RATE_LIMIT_PERIOD_SECONDS": "2",
            **env,
        }
        with _log_file(log_path) as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "syncer", "run",
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                env=environment(**variables), cwd=tmp_path,
            )  # fmt: skip
        return cls(process, port, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def healthz(self) -> tuple[int, dict[str, Any]] | None:
        """(status, body) of /healthz, or None while it does not answer."""
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{self.url}/healthz") as resp:
                return resp.status, await resp.json()
        except aiohttp.ClientConnectionError:
            return None

    async def metrics_text(self) -> str:
        """The /metrics page ("" while the daemon does not answer yet)."""
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{self.url}/metrics") as resp:
                assert resp.status == 200
                return await resp.text()
        except aiohttp.ClientConnectionError:
            return ""

    async def metric(self, name: str, **labels: str) -> float:
        """A sample's value from /metrics (0 when absent)."""
        for family in text_string_to_metric_families(await self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    async def passes(self, outcome: str = "success") -> dict[str, float]:
        return {
            e.value: await self.metric("syncer_passes_total", endpoint=e.value, outcome=outcome)
            for e in Endpoint
        }

    async def wait_healthy(self, expected: bool, within: float = 30) -> dict[str, Any]:
        """Wait until /healthz says 200 (or 503); return its body."""
        want = 200 if expected else 503

        async def check() -> dict[str, Any] | None:
            answer = await self.healthz()
            return answer[1] if answer and answer[0] == want else None

        return await eventually(check, within, f"/healthz {want}\n{self.log_text()}")

    async def stop(self, sig: int = signal.SIGTERM, within: float = 30) -> tuple[int, float]:
        """Send `sig`; (exit code, seconds it took to exit)."""
        started = monotonic()
        self.process.send_signal(sig)
        code = await asyncio.wait_for(self.process.wait(), within)
        return code, monotonic() - started

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines (of one event name)."""
        lines = [json.loads(line) for line in self.log_text().splitlines() if line.startswith("{")]
        return [e for e in lines if name is None or e.get("event") == name]


async def eventually(check: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail after `within` seconds."""
    deadline = monotonic() + within
    while True:
        if value := await check():
            return value
        if monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.2)


async def runs(url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(to_libpq_url(url))
    try:
        rows = await conn.fetch("SELECT endpoint, command, outcome FROM sync_runs ORDER BY id")
    finally:
        await conn.close()
    return [dict(r) for r in rows]
