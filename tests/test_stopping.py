"""Stopping: a stop request ends a pass at a batch boundary and sends nothing more, a real
cancellation stays a cancellation, and a one-shot command stopped by SIGINT or SIGTERM keeps
what it committed, records its run as interrupted, says so, and exits 130 or 143."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from syncer.client.api import CursorClient
from syncer.client.budget import PostgresBudget
from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi
from syncer.store.db import to_libpq_url
from syncer.store.ratebudget import RateBudgetTable
from syncer.store.store import Outcome, Store
from syncer.sync import Pass
from tests.support import env_for, last_runs, settings_for, sim_config, start_backfill, wait_until
from tests.truth import assert_equals_truth

# -- in process: the stop signal and real cancellation ---------------------------------------


class Waiting:
    """A sleep that says when someone waits on it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.started.set()
        await asyncio.sleep(seconds)


WaitingPass = tuple[Pass, asyncio.Event, Waiting, FakeApi]


@pytest.fixture
async def waiting_pass(clean_db: str) -> AsyncIterator[WaitingPass]:
    """A pass of commits whose first request must wait a minute for the rate budget."""
    async with FakeApi(sim_config(commits=50, changes=10)) as sim, Store.connect(clean_db) as store:
        settings = settings_for(sim, clean_db, CURSOR_RATE_LIMIT_REQUESTS=1,
                                CURSOR_RATE_LIMIT_PERIOD_SECONDS=60)  # fmt: skip
        stop, waiting = asyncio.Event(), Waiting()
        budget = PostgresBudget(RateBudgetTable(store), 1, 60.0, stop=stop, sleep=waiting.sleep)
        budget.settle(await budget.acquire(Endpoint.COMMITS.csv_path))  # the minute's request
        async with budget, CursorClient(settings, budget=budget) as api:
            sync = Pass(api, store, settings, Endpoint.COMMITS, "sync", stop=stop)
            yield sync, stop, waiting, sim


async def test_a_stop_during_a_budget_wait_ends_the_pass_without_sending_the_request(
    waiting_pass: WaitingPass, clean_db: str
) -> None:
    sync, stop, waiting, sim = waiting_pass
    running = asyncio.create_task(sync.run())
    await waiting.started.wait()
    stop.set()
    result = await running

    assert result.outcome is Outcome.INTERRUPTED
    assert result.error is None
    assert sim.stats.count() == 0, "the request it waited for was never sent"
    [run] = await last_runs(clean_db)
    assert run["outcome"] == "interrupted"
    assert run["finished_at"] is not None


async def test_a_real_cancellation_propagates_and_still_finishes_the_run_row(
    waiting_pass: WaitingPass, clean_db: str
) -> None:
    sync, _, waiting, sim = waiting_pass
    running = asyncio.create_task(sync.run())
    await waiting.started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    assert running.cancelled(), "a cancellation is not turned into a result"
    assert sim.stats.count() == 0
    [run] = await last_runs(clean_db)
    assert run["outcome"] == "interrupted"
    assert run["finished_at"] is not None


# -- one-shot commands: SIGINT and SIGTERM ----------------------------------------------------


def _lines(stderr: Path, prefix: str = "syncer: ") -> list[str]:
    return [line for line in stderr.read_text().splitlines() if line.startswith(prefix)]


def _events(stderr: Path) -> list[str]:
    lines = stderr.read_text().splitlines()
    return [json.loads(line).get("event") for line in lines if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_a_signalled_backfill_keeps_its_batches_records_the_run_and_resumes(
    clean_db: str, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    async with FakeApi(sim_config(commits=4000, changes=10, chunk_delay=0.5)) as sim:
        env = env_for(sim, clean_db, SYNC_BATCH_ROWS="100")
        stderr = tmp_path / "backfill.err"
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            proc = await start_backfill(env, stderr)
            await wait_until(lambda: conn.fetchval("SELECT count(*) FROM ai_commits"), "a batch")
            proc.send_signal(sig)
            stdout, _ = await asyncio.wait_for(proc.communicate(), 40)
            stored = await conn.fetchval("SELECT count(*) FROM ai_commits")
            mark = await conn.fetchval("SELECT high_water_mark FROM sync_state")
        finally:
            await conn.close()

        assert proc.returncode == code, stderr.read_text()
        assert 0 < stored < 4000, "the signal should land mid-stream"
        [line] = _lines(stderr)
        assert f"interrupted by {sig.name}" in line
        assert f"commits {stored} rows" in line, "it says what was kept"
        assert "run the same command again to resume" in line
        assert "Traceback" not in stderr.read_text()
        assert b"commits  interrupted" in stdout
        [run] = await last_runs(clean_db)
        assert run["command"] == "backfill"
        assert run["outcome"] == "interrupted"
        assert run["finished_at"] is not None
        assert run["rows_inserted"] == stored, "every batch it committed is counted"
        assert mark is None, "the window was not read to its end: the mark did not move"

        sim.faults.chunk_delay = 0.0
        rerun = await start_backfill(env, tmp_path / "rerun.err")
        await asyncio.wait_for(rerun.communicate(), 50)
        assert rerun.returncode == 0, (tmp_path / "rerun.err").read_text()
        assert await assert_equals_truth(clean_db, sim, Endpoint.COMMITS) == 4000
        assert [r["outcome"] for r in await last_runs(clean_db)] == ["interrupted", "success"]


@pytest.mark.slow
async def test_a_second_signal_stops_at_once_and_rolls_the_batch_in_flight_back(
    clean_db: str, tmp_path: Path
) -> None:
    async with FakeApi(sim_config(commits=4000, changes=10)) as sim:
        env = env_for(sim, clean_db, SYNC_BATCH_ROWS="100")
        stderr = tmp_path / "backfill.err"
        blocker = await asyncpg.connect(to_libpq_url(clean_db))
        watcher = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            proc = await start_backfill(env, stderr)
            await wait_until(lambda: watcher.fetchval("SELECT count(*) FROM ai_commits"), "a batch")
            writes = blocker.transaction()
            await writes.start()
            await blocker.execute("LOCK TABLE ai_commits IN EXCLUSIVE MODE")  # writes now wait
            kept = await blocker.fetchval("SELECT count(*) FROM ai_commits")
            await wait_until(
                lambda: watcher.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted "
                    "AND relation = 'ai_commits'::regclass"
                ),
                "a write to wait for the lock",
            )
            proc.send_signal(signal.SIGTERM)  # cannot reach a batch boundary: the write waits
            await wait_until(lambda: _async("stopping" in _events(stderr)), "the first signal")
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), 40)
            await writes.rollback()
            stored = await watcher.fetchval("SELECT count(*) FROM ai_commits")
        finally:
            await blocker.close()
            await watcher.close()

        assert proc.returncode == 143, stderr.read_text()
        [line] = _lines(stderr)
        assert "stopped at once by a second SIGTERM" in line
        assert "run the same command again to resume" in line
        assert stored == kept, "the batch that waited was rolled back, the committed ones stay"
        [run] = await last_runs(clean_db)
        assert run["outcome"] == "interrupted"
        assert run["finished_at"] is not None

        rerun = await start_backfill(env, tmp_path / "rerun.err")
        await asyncio.wait_for(rerun.communicate(), 50)
        assert rerun.returncode == 0, (tmp_path / "rerun.err").read_text()
        assert await assert_equals_truth(clean_db, sim, Endpoint.COMMITS) == 4000


async def _async(value: bool) -> bool:
    return value
