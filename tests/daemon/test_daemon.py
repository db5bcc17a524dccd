"""`syncer run` as a real subprocess against the simulator and PostgreSQL: it keeps data fresh,
tells the truth on /healthz and /metrics, survives outages, and stops cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
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
from tests.truth import assert_equals_truth

pytestmark = pytest.mark.slow

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


async def runs(url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(to_libpq_url(url))
    try:
        rows = await conn.fetch("SELECT endpoint, command, outcome FROM sync_runs ORDER BY id")
    finally:
        await conn.close()
    return [dict(r) for r in rows]


METRIC_NAMES = (
    "syncer_api_requests_total",
    "syncer_api_rate_limited_total",
    "syncer_rate_limit_wait_seconds_total",
    "syncer_rows_total",
    "syncer_passes_total",
    "syncer_pass_duration_seconds_bucket",
    "syncer_high_water_mark_timestamp_seconds",
    "syncer_high_water_mark_lag_seconds",
    "syncer_last_success_timestamp_seconds",
)


async def test_the_daemon_migrates_syncs_every_interval_and_reports(
    daemons: Callable[..., Awaitable[Daemon]], fresh_db: str
) -> None:
    async with simulator() as sim:
        daemon = await daemons(sim.url, fresh_db)

        async def two_passes_each() -> bool:
            answer = await daemon.healthz()
            return answer is not None and min((await daemon.passes()).values()) >= 2

        await eventually(two_passes_each, 30, f"two passes per endpoint\n{daemon.log_text()}")
        body = await daemon.wait_healthy(True)
        text = await daemon.metrics_text()
        code, _ = await daemon.stop()

        assert code == 0
        for endpoint in Endpoint:
            state = body["endpoints"][endpoint.value]
            assert state["healthy"]
            assert state["last_outcome"] == "success"
            assert state["high_water_mark"] is not None
            assert state["lag_seconds"] >= 0
            await assert_equals_truth(fresh_db, sim, endpoint)
        for name in METRIC_NAMES:
            assert f"\n{name}{{" in text, name
        assert 'syncer_api_requests_total{endpoint="commits",status="200"}' in text
        assert 'syncer_rows_total{endpoint="changes",result="inserted"} 300.0' in text
        assert sim.stats.rate_limited == 0

    done = daemon.events("pass_done")
    assert len(done) >= 4
    assert {"run_id", "endpoint", "window", "inserted", "high_water_mark"} <= done[0].keys()
    assert daemon.events("daemon_stopped")
    assert KEY not in daemon.log_text()
    assert {r["command"] for r in await runs(fresh_db)} == {"run"}


async def test_an_api_outage_turns_health_503_and_heals_without_a_restart(
    daemons: Callable[..., Awaitable[Daemon]], fresh_db: str
) -> None:
    async with simulator() as sim:
        daemon = await daemons(sim.url, fresh_db)
        await daemon.wait_healthy(True)

        await sim.stop()
        body = await daemon.wait_healthy(False)
        assert body["status"] == "unhealthy"

        async def all_failed() -> dict[str, Any] | None:
            # 503 comes with the first stale endpoint; the other's failure may follow later
            answer = await daemon.healthz()
            endpoints = answer[1]["endpoints"] if answer and answer[0] == 503 else {}
            failed = endpoints and all(e["last_outcome"] == "failed" for e in endpoints.values())
            return endpoints if failed else None

        endpoints = await eventually(all_failed, 30, f"every endpoint failed\n{daemon.log_text()}")
        assert set(endpoints) == {"commits", "changes"}
        await sim.start()
        await daemon.wait_healthy(True)
        code, _ = await daemon.stop()

    assert code == 0
    warnings = daemon.events("pass_will_retry")
    assert warnings
    assert "CURSOR_API_BASE_URL" in warnings[0]["hint"]
    assert daemon.events("endpoint_recovered")
    assert len(daemon.events("daemon_started")) == 1


async def test_the_daemon_waits_for_postgresql_and_survives_its_restart(
    daemons: Callable[..., Awaitable[Daemon]], tmp_path: Path
) -> None:
    embedded_module = pytest.importorskip("syncer.store.embedded")
    pg = embedded_module.EmbeddedPostgres(tmp_path / "pg", port=free_port())
    url = await asyncio.to_thread(pg.start)
    await asyncio.to_thread(pg.stop)
    try:
        async with simulator() as sim:
            daemon = await daemons(sim.url, url)

            async def waiting_for_database() -> bool:
                return bool(daemon.events("database_unavailable"))

            await eventually(waiting_for_database, 15, "the daemon to notice the database is down")
            assert (await daemon.healthz() or (0,))[0] == 503
            await asyncio.to_thread(pg.start)
            await daemon.wait_healthy(True)

            await asyncio.to_thread(pg.stop)
            await daemon.wait_healthy(False)
            await asyncio.to_thread(pg.start)
            await daemon.wait_healthy(True)
            before = await daemon.passes()
            await eventually(
                lambda: _more(daemon, before), 15, "new successful passes after the restart"
            )
            code, _ = await daemon.stop()
            assert code == 0
            for endpoint in Endpoint:
                await assert_equals_truth(url, sim, endpoint)
    finally:
        await asyncio.to_thread(pg.stop)
    hints = [e["hint"] for e in daemon.events("pass_will_retry")]
    assert any("DATABASE_URL" in hint for hint in hints)


async def _more(daemon: Daemon, before: dict[str, float]) -> bool:
    now = await daemon.passes()
    return all(now[e] > before[e] for e in now)


@pytest.mark.parametrize(
    ("chunk_delay", "shutdown_timeout"),
    [
        pytest.param(0.5, "10s", id="stops-at-a-batch-boundary"),
        pytest.param(4.0, "1s", id="cancels-after-the-timeout"),
    ],
)
async def test_sigterm_during_a_slow_stream_exits_0_in_time_and_loses_nothing(
    daemons: Callable[..., Awaitable[Daemon]],
    fresh_db: str,
    chunk_delay: float,
    shutdown_timeout: str,
) -> None:
    async with simulator(commits=4000, changes=4000, seed=9) as sim:
        sim.faults.chunk_delay = chunk_delay
        daemon = await daemons(
            sim.url,
            fresh_db,
            SYNC_SHUTDOWN_TIMEOUT=shutdown_timeout,
            SYNC_BATCH_ROWS="500",
        )

        async def streaming() -> bool:  # a first chunk arrived: a batch is committed
            rows = await daemon.metric("syncer_rows_total", endpoint="commits", result="inserted")
            return rows > 0

        await eventually(streaming, 30, f"the first batch\n{daemon.log_text()}")
        code, took = await daemon.stop()
        bound = float(shutdown_timeout.rstrip("s")) + 5 + 3  # + a cancelled pass's grace + exit
        assert code == 0
        assert took < bound
        assert "interrupted" in {r["outcome"] for r in await runs(fresh_db)}

        sim.faults.chunk_delay = 0
        later = await daemons(sim.url, fresh_db)
        await later.wait_healthy(True)
        assert (await later.stop())[0] == 0
        for endpoint in Endpoint:
            assert await assert_equals_truth(fresh_db, sim, endpoint) == 4000
    assert daemon.events("daemon_stopping")[0]["reason"] == "SIGTERM"


async def test_a_backfill_beside_the_daemon_shares_the_rate_budget(
    daemons: Callable[..., Awaitable[Daemon]], fresh_db: str, tmp_path: Path
) -> None:
    limit = {"CURSOR_RATE_LIMIT_REQUESTS": "3", "CURSOR_RATE_LIMIT_PERIOD_SECONDS": "2"}
    async with simulator(rate_limit_requests=3, rate_limit_period=2.0) as sim:
        daemon = await daemons(sim.url, fresh_db, SYNC_START="2d", SYNC_WINDOW="1d", **limit)
        await daemon.wait_healthy(True)
        backfill = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncer", "backfill", "--since", "6d",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
            env=environment(
                CURSOR_API_KEY=KEY, CURSOR_API_BASE_URL=sim.url, DATABASE_URL=fresh_db,
                SYNC_WINDOW="1d", SYNC_LOG_FORMAT="json", **limit,
            ),
        )  # fmt: skip
        output, _ = await asyncio.wait_for(backfill.communicate(), 90)
        assert backfill.returncode == 0, output.decode()
        await daemon.wait_healthy(True)
        assert (await daemon.stop())[0] == 0
        requests, refused = sim.stats.count(), sim.stats.rate_limited

    print(f"daemon + backfill: {requests} API requests, {refused} answered 429")
    assert requests >= 16  # the backfill alone reads 6-7 windows per endpoint
    assert refused == 0


async def test_sigterm_while_waiting_for_the_rate_budget_exits_at_once(
    daemons: Callable[..., Awaitable[Daemon]], fresh_db: str
) -> None:
    one_a_minute = {"CURSOR_RATE_LIMIT_REQUESTS": "1", "CURSOR_RATE_LIMIT_PERIOD_SECONDS": "60"}
    async with simulator(rate_limit_requests=1, rate_limit_period=60.0) as sim:
        daemon = await daemons(sim.url, fresh_db, SYNC_SHUTDOWN_TIMEOUT="30s", **one_a_minute)
        await daemon.wait_healthy(True)

        async def second_passes_waiting() -> bool:
            body = (await daemon.healthz() or (0, {"endpoints": {}}))[1]
            endpoints = body["endpoints"].values()
            return bool(endpoints) and all(e["running"] for e in endpoints)

        await eventually(second_passes_waiting, 10, "the second passes to wait for the budget")
        code, took = await daemon.stop()

    assert code == 0
    assert took < 5  # not the minute of budget, nor the 30 s shutdown timeout
    assert {e["endpoint"] for e in daemon.events("pass_interrupted")} == {"commits", "changes"}
    assert sim.stats.rate_limited == 0


async def test_a_taken_port_is_one_line_of_error_not_a_traceback(
    fresh_db: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncer", "run",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
            env=environment(
                CURSOR_API_KEY=KEY, CURSOR_API_BASE_URL="http://127.0.0.1:9",
                DATABASE_URL=fresh_db, SYNC_HTTP_HOST="127.0.0.1", SYNC_HTTP_PORT=str(port),
            ),
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(done.communicate(), 30)
    assert done.returncode == 2
    errors = [line for line in stderr.decode().splitlines() if line.startswith("syncer: error")]
    assert len(errors) == 1
    assert "SYNC_HTTP_PORT" in errors[0]
    assert "Traceback" not in stderr.decode()


async def test_a_key_refused_from_the_start_exits_1_with_one_line(
    fresh_db: str, tmp_path: Path
) -> None:
    async with simulator() as sim:
        daemon = await Daemon.start(tmp_path, sim.url, fresh_db, CURSOR_API_KEY="not-the-key")
        try:
            code = await asyncio.wait_for(daemon.process.wait(), 30)
        finally:
            await daemon.kill()
    log = daemon.log_text()
    assert code == 1, log
    errors = [line for line in log.splitlines() if line.startswith("syncer: error")]
    assert len(errors) == 1, log
    assert "HTTP 401" in errors[0]
    assert "check CURSOR_API_KEY" in errors[0]
    assert "not-the-key" not in log
    assert "Traceback" not in log
