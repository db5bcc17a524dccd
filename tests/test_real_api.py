"""What the real API does beyond our first document, each point proved against the simulator with
its knob on, over HTTP, ending with PostgreSQL equal to the simulator's truth row by row."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import pytest

from syncer.commands import backfill_command, sync_command
from syncer.endpoints import Endpoint
from syncer.errors import AuthError, BadRequest, CsvUnavailable
from syncer.fakeapi import FakeApi
from syncer.fakeapi.app import NOT_ENTERPRISE
from syncer.store.db import to_libpq_url
from tests.support import env_for, last_runs, settings_for, sim_config, start_backfill, wait_until
from tests.truth import EVER, FAR, assert_equals_truth, stored, truth


async def assert_both_equal_truth(url: str, sim: FakeApi) -> None:
    for endpoint in Endpoint:
        assert await assert_equals_truth(url, sim, endpoint) > 0


# --- 1. commitSource / commit_source ------------------------------------------------------------


@pytest.mark.parametrize("permute", [False, True], ids=["documented-order", "shuffled-columns"])
async def test_commit_source_is_stored_whatever_its_column_position(
    clean_db: str, permute: bool
) -> None:
    async with FakeApi(sim_config(permute_columns=permute)) as sim:
        assert await backfill_command(settings_for(sim, clean_db), "25d", "now", None) == 0
        await assert_both_equal_truth(clean_db, sim)
        sources = {
            row["commit_source"] for row in (await stored(clean_db, Endpoint.COMMITS)).values()
        }
        assert sources == {"ide", "cli", "cloud", "web"}, "an unknown value is kept as it comes"


async def test_commits_without_commit_source_store_null(clean_db: str) -> None:
    async with FakeApi(sim_config(commit_source=False)) as sim:
        assert await backfill_command(settings_for(sim, clean_db), "25d", "now", None) == 0
        await assert_both_equal_truth(clean_db, sim)
        db = await stored(clean_db, Endpoint.COMMITS)
        assert {row["commit_source"] for row in db.values()} == {None}


# --- 2. a maximum date range per request --------------------------------------------------------


@pytest.mark.parametrize(("max_days", "max_refusals"), [(30, 0), (7, 3)])
async def test_a_200_day_backfill_under_the_range_cap_equals_truth(
    clean_db: str, max_days: int, max_refusals: int
) -> None:
    """The default window (30d) fits a 30-day cap; under a 7-day cap the client learns the
    smaller size from the first refusals (30 → 15 → 7.5 → 3.75 days) instead of being
    refused once per window."""
    config = sim_config(days=200, commits=800, changes=500, max_range_days=max_days)
    async with FakeApi(config) as sim:
        assert await backfill_command(settings_for(sim, clean_db), "201d", "now", None) == 0
        await assert_both_equal_truth(clean_db, sim)
        for endpoint in Endpoint:
            refused = sim.stats.count(endpoint.csv_path, 400)
            assert refused == max_refusals, f"{endpoint.value}: {refused} refusals"


async def test_a_refused_one_day_window_is_a_real_error_with_the_servers_message(
    clean_db: str,
) -> None:
    async with FakeApi(sim_config(max_range_days=0.5)) as sim:
        settings = settings_for(sim, clean_db, SYNC_WINDOW="1d")
        with pytest.raises(BadRequest, match="HTTP 400: Bad Request: Date range cannot exceed"):
            await backfill_command(settings, "3d", "now", Endpoint.COMMITS)
        assert sim.stats.count(Endpoint.COMMITS.csv_path, 400) == 1, "not halved below a day"
        runs = await last_runs(clean_db)
        assert runs[-1]["outcome"] == "failed"
        assert "Date range cannot exceed 0.5 days" in runs[-1]["error"]
        # the same data set read with a smaller cap configured: equal to truth
    async with FakeApi(sim_config(max_range_days=1)) as sim:
        assert await backfill_command(settings_for(sim, clean_db), "25d", "now", None) == 0
        await assert_both_equal_truth(clean_db, sim)


# --- 3. a key served twice: the newest created_at wins -------------------------------------------


@pytest.mark.parametrize("form", ["csv", "json"])
@pytest.mark.parametrize("order", ["newer-first", "older-first"])
async def test_amended_rows_keep_the_newest_copy(clean_db: str, order: str, form: str) -> None:
    async with FakeApi(sim_config(amend_rate=0.2, amend_order=order)) as sim:
        settings = settings_for(sim, clean_db, CURSOR_API_FORMAT=form, SYNC_BATCH_ROWS=50)
        assert await sync_command(settings) == 0
        await assert_both_equal_truth(clean_db, sim)
        for endpoint in Endpoint:  # the knob was exercised: rows were served twice
            assert sum(bool(sim.dataset.amended(endpoint, i)) for i in range(400)) > 40


# --- 4. two error shapes, and a key whose team is not on Enterprise ------------------------------


@pytest.mark.parametrize("shape", ["error", "code"])
async def test_auth_errors_show_the_servers_message_and_are_not_retried(
    clean_db: str, shape: str
) -> None:
    config = sim_config(error_shape=shape, not_enterprise_key="team-key")
    async with FakeApi(config) as sim:
        with pytest.raises(AuthError, match=f"HTTP 401 \\({NOT_ENTERPRISE}\\)"):
            await sync_command(settings_for(sim, clean_db, CURSOR_API_KEY="team-key"))
        with pytest.raises(AuthError, match="HTTP 401 \\(.*Invalid API key"):
            await sync_command(settings_for(sim, clean_db, CURSOR_API_KEY="wrong"))
        assert sim.stats.count(status=401) == 4, "one request per endpoint and key: no retry"
        assert await sync_command(settings_for(sim, clean_db)) == 0
        await assert_both_equal_truth(clean_db, sim)


# --- 5. 429 without Retry-After -------------------------------------------------------------------


@pytest.mark.slow
async def test_429_without_retry_after_backs_off_and_ends_equal_to_truth(clean_db: str) -> None:
    """The server allows 2 requests a second; the client believes 4: it is refused, with no
    Retry-After, and must hold back (at least a slot of its window, longer as refusals repeat)."""
    config = sim_config(no_retry_after=True, rate_limit_requests=2, rate_limit_period=1.0)
    async with FakeApi(config) as sim:
        settings = settings_for(
            sim, clean_db, SYNC_WINDOW="2d", CURSOR_RATE_LIMIT_REQUESTS=4,
            CURSOR_RATE_LIMIT_PERIOD_SECONDS=1, CURSOR_MAX_RETRIES=8,
        )  # fmt: skip
        assert await backfill_command(settings, "21d", "now", None) == 0
        assert sim.stats.rate_limited > 0, "the knob must have been exercised"
        await assert_both_equal_truth(clean_db, sim)


# --- 7. day-granular instants: the newest window ends at the API's own now -----------------------


async def test_day_granular_api_still_gives_the_newest_rows_every_pass(clean_db: str) -> None:
    async with FakeApi(sim_config(day_granularity=True, days=5)) as sim:
        settings = settings_for(sim, clean_db, SYNC_WINDOW="1d")
        assert await sync_command(settings) == 0
        await assert_both_equal_truth(clean_db, sim)
        # the next interval: rows that arrived since are stored by the next pass
        sim.dataset.add(Endpoint.COMMITS, commit_hash="f" * 40)
        sim.dataset.add(Endpoint.CHANGES, change_id="fresh-change")
        assert await sync_command(settings) == 0
        await assert_both_equal_truth(clean_db, sim)
        assert "f" * 40 in await stored(clean_db, Endpoint.COMMITS)


async def test_a_backfill_until_now_asks_up_to_the_apis_now(clean_db: str) -> None:
    async with FakeApi(sim_config(day_granularity=True, days=5)) as sim:
        settings = settings_for(sim, clean_db, SYNC_WINDOW="2d")
        assert await backfill_command(settings, "6d", "now", None) == 0
        await assert_both_equal_truth(clean_db, sim)


# --- the JSON fallback ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "unavailable"),
    [("json", None), ("auto", "404"), ("auto", "410"), ("auto", "html"), ("auto", "501")],
)
async def test_json_pages_end_equal_to_truth_within_the_rate_budget(
    clean_db: str, form: str, unavailable: str | None
) -> None:
    """5 requests per period on both sides (the period scaled to a second): zero 429s."""
    config = sim_config(rate_limit_requests=5, rate_limit_period=1.0, csv_unavailable=unavailable)
    async with FakeApi(config) as sim:
        settings = settings_for(
            sim, clean_db, CURSOR_API_FORMAT=form, CURSOR_RATE_LIMIT_REQUESTS=5,
            CURSOR_RATE_LIMIT_PERIOD_SECONDS=1, CURSOR_JSON_PAGE_SIZE=100, CURSOR_MAX_RETRIES=0,
        )  # fmt: skip
        assert await sync_command(settings) == 0
        await assert_both_equal_truth(clean_db, sim)
        assert sim.stats.rate_limited == 0
        for endpoint in Endpoint:
            assert sim.stats.count(endpoint.csv_path) == (0 if form == "json" else 1)
            assert sim.stats.count(endpoint.json_path, 200) >= len(truth(sim, endpoint)) // 100
        runs = await last_runs(clean_db)
        expected = "json" if form == "json" else "csv+json"
        assert {r["api_format"] for r in runs} == {expected}


async def test_a_csv_route_that_is_gone_fails_clearly_when_csv_is_required(clean_db: str) -> None:
    async with FakeApi(sim_config(csv_unavailable="404")) as sim:
        settings = settings_for(sim, clean_db, CURSOR_API_FORMAT="csv")
        with pytest.raises(CsvUnavailable, match="HTTP 404"):
            await sync_command(settings)


async def test_json_bad_items_are_quarantined_with_their_json_text(clean_db: str) -> None:
    async with FakeApi(sim_config(malformed_rate=0.05)) as sim:
        settings = settings_for(sim, clean_db, CURSOR_API_FORMAT="json")
        assert await sync_command(settings) == 0
        await assert_both_equal_truth(clean_db, sim)
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            for endpoint in Endpoint:
                bad = sim.dataset.malformed_keys(endpoint, EVER, FAR)
                rows = await conn.fetch(
                    "SELECT raw, reason FROM rejected_rows WHERE endpoint = $1", endpoint.value
                )
                assert bad
                assert all(r["raw"].startswith("{") and r["reason"] for r in rows)
                assert {k for k in bad if any(k in r["raw"] for r in rows)} == bad
        finally:
            await conn.close()


async def test_a_refused_page_size_is_halved_once(clean_db: str) -> None:
    async with FakeApi(sim_config(max_page_size=500)) as sim:
        settings = settings_for(sim, clean_db, CURSOR_API_FORMAT="json")
        assert await sync_command(settings) == 0
        await assert_both_equal_truth(clean_db, sim)
        for endpoint in Endpoint:
            assert sim.stats.count(endpoint.json_path, 400) == 1


async def test_status_and_metrics_say_which_form_serves_each_endpoint(
    clean_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from prometheus_client.parser import text_string_to_metric_families

    from syncer.commands import status_command
    from syncer.daemon.metrics import Metrics

    async with FakeApi(sim_config(csv_unavailable="html")) as sim:
        settings = settings_for(sim, clean_db)
        assert await sync_command(settings) == 0
        capsys.readouterr()
        assert await status_command(settings, as_json=True) == 0
        status = {s["endpoint"]: s for s in json.loads(capsys.readouterr().out)}
        assert {name: s["api_format"] for name, s in status.items()} == {
            "commits": "csv+json",  # asked the CSV route, then switched
            "changes": "csv+json",
        }
        assert await status_command(settings, as_json=False) == 0
        assert "csv+json" in capsys.readouterr().out
        await assert_both_equal_truth(clean_db, sim)

    metrics = Metrics()
    metrics.on_request(Endpoint.COMMITS.csv_path, 200)
    metrics.on_request(Endpoint.COMMITS.json_path, 200)
    metrics.on_request(Endpoint.COMMITS.json_path, 200)
    text = metrics.render().decode()
    got = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    commits = "endpoint", "commits"
    assert got["syncer_api_form", frozenset({commits, ("form", "json")})] == 1
    assert got["syncer_api_form", frozenset({commits, ("form", "csv")})] == 0
    assert got["syncer_api_form_requests_total", frozenset({commits, ("form", "json")})] == 2
    assert got["syncer_api_form_requests_total", frozenset({commits, ("form", "csv")})] == 1


@pytest.mark.slow
async def test_a_signalled_json_backfill_keeps_its_pages_and_resumes(
    clean_db: str, tmp_path: Path
) -> None:
    async with FakeApi(sim_config(commits=2000, changes=10)) as sim:
        env = env_for(
            sim, clean_db, CURSOR_API_FORMAT="json", CURSOR_JSON_PAGE_SIZE="100",
            CURSOR_RATE_LIMIT_REQUESTS="2", CURSOR_RATE_LIMIT_PERIOD_SECONDS="1",
        )  # fmt: skip
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            proc = await start_backfill(env, tmp_path / "backfill.err")
            await wait_until(lambda: conn.fetchval("SELECT count(*) FROM ai_commits"), "a page")
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), 40)
            stored = await conn.fetchval("SELECT count(*) FROM ai_commits")
            mark = await conn.fetchval("SELECT high_water_mark FROM sync_state")
        finally:
            await conn.close()
        assert proc.returncode == 143, (tmp_path / "backfill.err").read_text()
        assert 0 < stored < 2000
        assert stored % 100 == 0, "whole pages are kept"
        assert mark is None
        [run] = await last_runs(clean_db)
        assert (run["outcome"], run["rows_inserted"], run["api_format"]) == (
            "interrupted",
            stored,
            "json",
        )
        rerun = await start_backfill(
            {**env, "CURSOR_RATE_LIMIT_REQUESTS": "1000"}, tmp_path / "2.err"
        )
        await asyncio.wait_for(rerun.communicate(), 50)
        assert rerun.returncode == 0, (tmp_path / "2.err").read_text()
        assert await assert_equals_truth(clean_db, sim, Endpoint.COMMITS) == 2000
