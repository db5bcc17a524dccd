"""`syncer run` as a real subprocess against the simulator and PostgreSQL: it keeps data fresh,
tells the truth on /healthz and /metrics, survives outages, and stops cleanly."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from syncer.endpoints import Endpoint
from tests.daemon.support import (
    KEY,
    Daemon,
    environment,
    eventually,
    free_port,
    runs,
    simulator,
)
from tests.truth import assert_equals_truth

pytestmark = pytest.mark.slow


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
