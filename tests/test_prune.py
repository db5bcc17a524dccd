"""Deletions: rows the API withdrew go with SYNC_PRUNE=true and stay by default; a read that
cannot prove them gone (cut short, or too many to be believable) deletes nothing and says so."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from syncer.commands import backfill_command, open_resources, verify_command
from syncer.config import Settings, load_settings
from syncer.daemon.metrics import Metrics
from syncer.daemon.rescan import Rescans
from syncer.endpoints import Endpoint
from syncer.errors import ConfigError, StreamInterrupted
from syncer.fakeapi import FakeApi
from syncer.fakeapi.drift import withdraw
from syncer.results import Outcome, PassResult
from syncer.sync import Pass
from tests.support import last_runs, settings_for, sim_config
from tests.truth import assert_equals_truth, stored, truth

COMMITS, CHANGES = Endpoint.COMMITS, Endpoint.CHANGES
DAY, DAYS_2 = timedelta(days=1), timedelta(days=2)


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, (DAY, timedelta(days=7), False, 0.1)),
        (
            {"SYNC_RESCAN_INTERVAL": "0", "SYNC_PRUNE": "true", "SYNC_PRUNE_MAX": "25%"},
            (timedelta(0), timedelta(days=7), True, 0.25),
        ),
        (
            {"SYNC_RESCAN_SPAN": "2d", "SYNC_PRUNE_MAX": "0.05"},
            (timedelta(hours=24), DAYS_2, False, 0.05),
        ),
    ],
)
def test_rescan_and_prune_settings(env: dict[str, Any], want: tuple[Any, ...]) -> None:
    s = Settings(_env_file=None, **env)
    assert (s.sync_rescan_interval, s.sync_rescan_span, s.sync_prune, s.sync_prune_max) == want


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SYNC_PRUNE_MAX": "150%"}, "SYNC_PRUNE_MAX: must be a share between 0% and 100%"),
        ({"SYNC_PRUNE_MAX": "lots"}, "SYNC_PRUNE_MAX: 'lots' is not a share"),
        ({"SYNC_RESCAN_SPAN": "0"}, "SYNC_RESCAN_SPAN: must be a positive duration"),
        ({"SYNC_RESCAN_INTERVAL": "-1h"}, "SYNC_RESCAN_INTERVAL"),
    ],
)
def test_bad_rescan_and_prune_settings_are_one_line_errors(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(_env_file=None)


@pytest.fixture
async def sim() -> AsyncIterator[FakeApi]:
    async with FakeApi(sim_config()) as api:
        yield api


def recent(sim: FakeApi, endpoint: Endpoint, days: float) -> list[dict[str, Any]]:
    since = datetime.now(timezone.utc) - timedelta(days=days)
    return [r for r in truth(sim, endpoint).values() if r["created_at"] >= since]


async def rescan(
    sim: FakeApi, url: str, endpoint: Endpoint, metrics: Metrics | None = None, **env: Any
) -> PassResult:
    """One scheduled rescan of the daemon, run in-process (its pass built as the daemon does)."""
    settings = settings_for(sim, url, SYNC_RESCAN_SPAN="7d", **env)
    async with open_resources(settings) as (api, store):

        def make_rescan(endpoint: Endpoint, since: datetime, until: datetime) -> Pass:
            return Pass(api, store, settings, endpoint, "rescan", since=since, until=until,
                        wait_for_lock=True, prune=settings.sync_prune)  # fmt: skip

        rescans = Rescans(settings, metrics or Metrics(), asyncio.Event(), set(), make_rescan)
        return await rescans.run(endpoint, store)


async def test_withdrawn_rows_disappear_with_sync_prune_and_stay_by_default(
    sim: FakeApi, clean_db: str
) -> None:
    assert await backfill_command(settings_for(sim, clean_db), "25d", "now", None) == 0
    gone = {e: withdraw(sim.dataset, e, recent(sim, e, 6), 2) for e in Endpoint}
    with_files = [k for k in gone[CHANGES] if (await stored(clean_db, CHANGES))[k]["files"]]
    assert with_files, "a withdrawn change with file rows, to see them go too"

    for endpoint in Endpoint:
        result = await rescan(sim, clean_db, endpoint)
        assert (result.outcome, result.counts.deleted) == (Outcome.SUCCESS, 0)
        assert set(gone[endpoint]) <= set(await stored(clean_db, endpoint)), "kept by default"

    metrics = Metrics()
    for endpoint in Endpoint:
        result = await rescan(sim, clean_db, endpoint, metrics, SYNC_PRUNE="true")
        assert (result.outcome, result.counts.deleted, result.warnings) == (
            Outcome.SUCCESS, 2, []
        )  # fmt: skip
        await assert_equals_truth(clean_db, sim, endpoint)
        labels = {"endpoint": endpoint.value, "result": "deleted"}
        assert metrics.registry.get_sample_value("syncer_rescan_rows_total", labels) == 2
    runs = [r for r in await last_runs(clean_db) if r["command"] == "rescan"]
    assert [r["rows_deleted"] for r in runs] == [0, 0, 2, 2]
    assert {r["outcome"] for r in runs} == {"success"}


async def test_a_response_cut_cleanly_short_of_its_total_count_prunes_nothing(
    sim: FakeApi, clean_db: str
) -> None:
    settings = settings_for(sim, clean_db, SYNC_PRUNE="true")
    assert await backfill_command(settings, "25d", "now", COMMITS) == 0
    oldest = sorted(truth(sim, COMMITS).values(), key=lambda r: r["created_at"])[:3]
    (gone,) = withdraw(sim.dataset, COMMITS, recent(sim, COMMITS, 10), 1)

    sim.faults.shorten_next(rows=3)  # the three oldest rows left out, the response ends cleanly
    assert await backfill_command(settings, "25d", "now", COMMITS) == 0
    kept = set(await stored(clean_db, COMMITS))
    assert gone in kept
    assert {r["commit_hash"] for r in oldest} <= kept
    (run,) = [r for r in await last_runs(clean_db)][-1:]
    assert run["rows_deleted"] == 0
    assert "nothing pruned: the API counts" in run["error"]
    assert "delivered" in run["error"]

    assert await backfill_command(settings, "25d", "now", COMMITS) == 0
    assert gone not in await stored(clean_db, COMMITS)
    await assert_equals_truth(clean_db, sim, COMMITS)


async def test_pruning_more_than_the_cap_deletes_nothing_and_says_so(
    sim: FakeApi, clean_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await backfill_command(settings_for(sim, clean_db), "25d", "now", COMMITS) == 0
    window = recent(sim, COMMITS, 6.5)
    gone = withdraw(sim.dataset, COMMITS, window, len(window) // 6)  # about 15% of the 7 days

    result = await rescan(sim, clean_db, COMMITS, SYNC_PRUNE="true")
    assert (result.outcome, result.counts.deleted) == (Outcome.SUCCESS, 0)
    (warning,) = result.warnings
    assert "more than SYNC_PRUNE_MAX (10%)" in warning
    assert f"{len(gone)} of " in warning
    assert set(gone) <= set(await stored(clean_db, COMMITS))
    assert "SYNC_PRUNE_MAX" in (await last_runs(clean_db))[-1]["error"]

    settings = settings_for(sim, clean_db)
    capsys.readouterr()
    assert await verify_command(settings, endpoint=COMMITS, since="25d") == 3, "verify reports it"
    assert "span(s) differ" in capsys.readouterr().out

    result = await rescan(sim, clean_db, COMMITS, SYNC_PRUNE="true", SYNC_PRUNE_MAX="20%")
    assert result.counts.deleted == len(gone)
    await assert_equals_truth(clean_db, sim, COMMITS)


async def test_a_stream_that_did_not_end_cleanly_prunes_nothing(
    sim: FakeApi, clean_db: str
) -> None:
    assert await backfill_command(settings_for(sim, clean_db), "25d", "now", COMMITS) == 0
    (gone,) = withdraw(sim.dataset, COMMITS, recent(sim, COMMITS, 10), 1)
    sim.faults.cut_next(after_bytes=20_000, times=10)
    settings = settings_for(
        sim, clean_db, SYNC_PRUNE="true", CURSOR_MAX_RETRIES=0, SYNC_MIN_WINDOW="30d"
    )
    with pytest.raises(StreamInterrupted):
        await backfill_command(settings, "25d", "now", COMMITS)
    assert gone in await stored(clean_db, COMMITS)
    assert (await last_runs(clean_db))[-1]["rows_deleted"] == 0


async def test_through_the_json_pages_withdrawn_rows_are_found_by_verify_and_pruned(
    sim: FakeApi, clean_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(sim, clean_db, CURSOR_API_FORMAT="json")
    assert await backfill_command(settings, "25d", "now", COMMITS) == 0
    gone = withdraw(sim.dataset, COMMITS, recent(sim, COMMITS, 10), 2)
    capsys.readouterr()
    assert await verify_command(settings, endpoint=COMMITS, since="25d", as_json=True) == 3
    out = capsys.readouterr().out
    found = json.loads(out[out.index("\n{\n") + 1 :] if not out.startswith("{") else out)
    unexpected = {
        k for m in found["endpoints"]["commits"]["mismatches"] for k in m["unexpected_keys"]
    }
    assert unexpected == set(gone)
    assert sim.stats.count(COMMITS.csv_path) == 0, "the JSON form throughout"

    pruning = settings_for(sim, clean_db, CURSOR_API_FORMAT="json", SYNC_PRUNE="true")
    assert await backfill_command(pruning, "25d", "now", COMMITS) == 0
    assert (await last_runs(clean_db))[-1]["rows_deleted"] == 2
    await assert_equals_truth(clean_db, sim, COMMITS)
