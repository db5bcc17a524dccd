"""Exact beyond the lookback: `syncer verify` against the API's own counts, repair, and pruning,
against the simulator over HTTP and a real PostgreSQL; each test ends equal to the truth."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from syncer.client.api import CursorClient
from syncer.client.counts import count_rows
from syncer.commands import backfill_command, sync_command, verify_command
from syncer.endpoints import Endpoint
from syncer.errors import ConfigError
from syncer.fakeapi import FakeApi
from syncer.fakeapi.drift import add_late, newest
from syncer.store.db import to_libpq_url
from syncer.store.spans import count_stored
from syncer.store.store import Store
from syncer.verify import align, plan_spans
from tests.support import env_for, last_runs, run_syncer, settings_for, sim_config
from tests.truth import assert_equals_truth, stored, truth

DAY = timedelta(days=1)
COMMITS = Endpoint.COMMITS


@pytest.fixture
async def sim() -> AsyncIterator[FakeApi]:
    async with FakeApi(sim_config()) as api:
        yield api


async def execute(url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(to_libpq_url(url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def rows_between(sim: FakeApi, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return sorted(
        (r for r in truth(sim, COMMITS).values() if start <= r["created_at"] < end),
        key=lambda r: r["created_at"],
    )


def json_of(out: str) -> Any:
    """The JSON document printed last (log lines of an in-process run may come before it)."""
    return json.loads(out[out.index("\n{\n") + 1 :] if not out.startswith("{") else out)


async def verify_json(sim: FakeApi, url: str, *flags: str) -> tuple[int, dict[str, Any], str]:
    """`syncer verify --json` as a subprocess: (exit code, its JSON, its stderr)."""
    proc = await run_syncer(env_for(sim, url), "verify", "--endpoint", "commits", "--json", *flags)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if out.strip() else {}, err.decode()


# --- spans and boundaries ------------------------------------------------------------------


def test_spans_are_cut_on_grain_boundaries_and_halve_down_to_the_grain() -> None:
    start = datetime(2026, 9, 5, 13, 30, tzinfo=timezone.utc)
    spans = plan_spans(start, start + timedelta(days=90), timedelta(days=30), DAY)
    assert spans[0].start == start
    assert spans[-1].end == start + timedelta(days=90)
    assert all(a.end == b.start for a, b in zip(spans, spans[1:], strict=False))
    assert all(s.end - s.start <= timedelta(days=30) for s in spans)
    assert all(align(s.end, DAY) == s.end for s in spans[:-1])

    leaves, todo = [], [spans[1]]
    while todo:
        span = todo.pop()
        halves = span.halves(DAY)
        if halves is None:
            leaves.append(span)
        else:
            assert halves[0].end == halves[1].start
            assert halves[0].start == span.start
            todo.extend(halves)
    assert len(leaves) == 30, "a 30-day span aligned on days halves into its 30 days"
    assert all(leaf.end - leaf.start == DAY for leaf in leaves)


async def test_adjacent_spans_never_both_count_a_row_on_their_boundary(
    sim: FakeApi, clean_db: str
) -> None:
    settings = settings_for(sim, clean_db)
    assert await backfill_command(settings, "25d", "now", COMMITS) == 0
    rows = list(truth(sim, COMMITS).values())
    on_boundary = rows[len(rows) // 2]["created_at"]
    a, b = on_boundary - DAY, on_boundary + DAY
    async with CursorClient(settings) as api, Store.connect(clean_db) as store:
        api_whole = await count_rows(api, COMMITS, a, b)
        api_parts = [
            await count_rows(api, COMMITS, *s) for s in ((a, on_boundary), (on_boundary, b))
        ]
        db_parts = [
            await count_stored(store, COMMITS, *s) for s in ((a, on_boundary), (on_boundary, b))
        ]
        assert await count_stored(store, COMMITS, a, b) == api_whole == sum(api_parts)
    assert api_parts == db_parts
    assert api_parts[1] == len(rows_between(sim, on_boundary, b)), "the boundary row is the right's"


# --- verify --------------------------------------------------------------------------------


async def test_rows_late_beyond_the_lookback_are_missed_by_sync_then_repaired_by_verify(
    sim: FakeApi, clean_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(sim, clean_db)
    assert await sync_command(settings) == 0
    late = add_late(sim.dataset, COMMITS, 3, behind=timedelta(hours=3))
    late_keys = {r["commit_hash"] for r in late}
    assert await sync_command(settings) == 0
    assert not late_keys & set(await stored(clean_db, COMMITS)), "sync reads only the lookback"

    capsys.readouterr()
    assert await verify_command(settings, endpoint=COMMITS, as_json=True) == 3
    report = json_of(capsys.readouterr().out)["endpoints"]["commits"]
    (mismatch,) = report["mismatches"]
    assert set(mismatch["missing_keys"]) == late_keys
    assert (mismatch["api"] - mismatch["stored"], mismatch["unexpected"]) == (3, 0)
    span_start = datetime.fromisoformat(mismatch["start"])
    assert span_start <= late[0]["created_at"] < datetime.fromisoformat(mismatch["end"])

    assert await verify_command(settings, endpoint=COMMITS, repair=True, as_json=True) == 0
    report = json_of(capsys.readouterr().out)["endpoints"]["commits"]
    assert (report["mismatches"], len(report["repaired"])) == ([], 1)
    await assert_equals_truth(clean_db, sim, COMMITS)
    runs = [r for r in await last_runs(clean_db) if r["command"] == "verify"]
    assert [(r["outcome"], r["rows_inserted"]) for r in runs] == [("success", 3)]


async def test_lost_and_unserved_rows_are_named_by_day_then_repaired_and_pruned(
    sim: FakeApi, clean_db: str
) -> None:
    assert await backfill_command(settings_for(sim, clean_db), "25d", "now", None) == 0
    start = align(newest(sim.dataset, COMMITS)["created_at"], DAY) - timedelta(days=12)
    days = [rows_between(sim, start + i * DAY, start + (i + 1) * DAY) for i in (0, 3, 7)]
    lost = {days[0][5]["commit_hash"], days[0][9]["commit_hash"], days[1][2]["commit_hash"]}
    await execute(clean_db, "DELETE FROM ai_commits WHERE commit_hash = ANY($1)", list(lost))
    # Two rows never served on the third day: a lost row and an extra one in the same span
    # cancel in the counts (README: what verify cannot see), and which days share a halved span
    # depends on the time of day the test runs. With -2, -1 and +2 no run of days sums to zero.
    unserved = {
        f"never-served-{i}": days[2][0]["created_at"] + timedelta(seconds=i) for i in (1, 2)
    }
    for key, created in unserved.items():
        await execute(
            clean_db,
            "INSERT INTO ai_commits (commit_hash, created_at) VALUES ($1, $2)",
            key,
            created,
        )

    code, report, err = await verify_json(sim, clean_db, "--since", "25d")
    assert code == 3, err
    assert "request(s) if all match" in err, "it says what it will cost before it starts"
    mismatches = report["endpoints"]["commits"]["mismatches"]
    assert len(mismatches) == 3, "two days with lost rows, one with a row never served"
    named: set[str] = set()
    truth_of = truth(sim, COMMITS)
    for m in mismatches:
        span_start, span_end = datetime.fromisoformat(m["start"]), datetime.fromisoformat(m["end"])
        assert span_end - span_start <= DAY
        created = {k: truth_of[k]["created_at"] for k in lost} | unserved
        inside = {k for k, t in created.items() if span_start <= t < span_end}
        assert inside
        assert set(m["missing_keys"]) | set(m["unexpected_keys"]) == inside
        assert m["stored"] - m["api"] == len(m["unexpected_keys"]) - len(m["missing_keys"])
        named |= inside
    assert named == lost | set(unserved)

    code, report, err = await verify_json(sim, clean_db, "--since", "25d", "--repair", "--prune")
    assert code == 0, err
    assert report["endpoints"]["commits"]["deleted"] == len(unserved)
    await assert_equals_truth(clean_db, sim, COMMITS)
    code, report, err = await verify_json(sim, clean_db, "--since", "25d")
    assert (code, report["endpoints"]["commits"]["mismatches"]) == (0, []), err


async def test_verify_of_90_days_with_one_differing_day_costs_log_requests(
    clean_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeApi(sim_config(days=90, commits=900, changes=10)) as sim:
        settings = settings_for(sim, clean_db)
        assert await backfill_command(settings, "91d", "now", COMMITS) == 0
        now = datetime.now(timezone.utc)
        victim = rows_between(sim, now - timedelta(days=40), now)[0]["commit_hash"]
        await execute(clean_db, "DELETE FROM ai_commits WHERE commit_hash = $1", victim)
        capsys.readouterr()
        paths = (COMMITS.json_path, COMMITS.csv_path)
        before = [sim.stats.count(path) for path in paths]
        assert await verify_command(settings, since="90d", endpoint=COMMITS, as_json=True) == 3
        out = json_of(capsys.readouterr().out)["endpoints"]["commits"]
        assert [m["missing_keys"] for m in out["mismatches"]] == [[victim]]
        counts, reads = (sim.stats.count(p) - b for p, b in zip(paths, before, strict=True))
        assert out["requests"] == counts + reads
        # one count per span of at most 30 days (4: the range is not aligned on days), five
        # halvings of the differing one (30 → 15 → 8 → 4 → 2 → 1 days), one read of its keys
        assert (counts, reads) <= (4 + 5, 1)
        assert out["spans_checked"] < 20, "the matching spans are not cut up"
        print(f"verify, 90 days, one differing day: {counts} count + {reads} read requests")


@pytest.mark.parametrize("order", ["newer-first", "older-first"])
async def test_amended_commits_counted_twice_by_the_api_are_read_and_not_reported(
    clean_db: str, order: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API counts an amended commit once per copy, the store holds it once: the counts of
    such spans differ, so verify must read their keys, which agree, and report no mismatch."""
    async with FakeApi(sim_config(amend_rate=0.2, amend_order=order)) as sim:
        settings = settings_for(sim, clean_db)
        assert await sync_command(settings) == 0
        await assert_equals_truth(clean_db, sim, COMMITS)
        stored_rows = len(await stored(clean_db, COMMITS))
        async with CursorClient(settings) as api, Store.connect(clean_db) as store:
            mark = await store.high_water_mark(COMMITS)
            assert mark is not None
            first = datetime.now(timezone.utc) - timedelta(days=25)
            api_rows = await count_rows(api, COMMITS, first, mark + timedelta(milliseconds=1))
        assert api_rows > stored_rows, "the knob was exercised: the API counts some rows twice"

        capsys.readouterr()
        paths = (COMMITS.json_path, COMMITS.csv_path)
        before = [sim.stats.count(path) for path in paths]
        assert await verify_command(settings, since="25d", endpoint=COMMITS, as_json=True) == 0
        report = json_of(capsys.readouterr().out)["endpoints"]["commits"]
        assert report["mismatches"] == []
        counts, reads = (sim.stats.count(p) - b for p, b in zip(paths, before, strict=True))
        assert report["requests"] == counts + reads
        # all matching, verify would send one count per planned span; the differing spans were
        # halved (more counts) and their keys read (one request each)
        planned = len(plan_spans(first, mark, settings.sync_window, DAY))
        assert counts > planned, (counts, planned)
        assert reads > 0, "the spans whose counts differ were read"
        assert report["spans_checked"] > planned
        await assert_equals_truth(clean_db, sim, COMMITS)


async def test_verify_fails_with_one_line_and_exit_1_when_the_api_refuses_the_key(
    sim: FakeApi, clean_db: str
) -> None:
    env = {**env_for(sim, clean_db), "CURSOR_API_KEY": "not-the-key"}
    proc = await run_syncer(env, "verify", "--since", "5d", "--until", "now")
    out, err = await proc.communicate()
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 1
    assert lines[-1].startswith("syncer: error: ")
    assert "401" in lines[-1]
    assert "Traceback" not in err.decode()


async def test_verify_prune_without_repair_is_a_usage_error(sim: FakeApi, clean_db: str) -> None:
    with pytest.raises(ConfigError, match="add --repair"):
        await verify_command(settings_for(sim, clean_db), prune=True)


@pytest.mark.slow
async def test_a_signalled_verify_reports_what_it_checked_and_exits_130(
    sim: FakeApi, clean_db: str, tmp_path: Path
) -> None:
    assert await backfill_command(settings_for(sim, clean_db), "25d", "now", COMMITS) == 0
    # one request per ten minutes: the first span is counted, the second waits for the budget
    env = env_for(sim, clean_db, CURSOR_RATE_LIMIT_REQUESTS="1")
    env["CURSOR_RATE_LIMIT_PERIOD_SECONDS"] = "600"
    errors = tmp_path / "verify.err"
    with errors.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncer", "verify", "--since", "45d", "--endpoint", "commits",
            "--json", env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=err,
        )  # fmt: skip
    for _ in range(1500):
        if " api " in errors.read_text():
            break
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = errors.read_text()
    assert proc.returncode == 130, text
    assert ": 2 span(s)" in text, "45 days: two spans, and the second one must wait"
    assert "syncer: verify interrupted by SIGINT" in text.splitlines()[-1]
    assert "Traceback" not in text
    report = json_of(out.decode())["endpoints"]["commits"]
    assert (report["spans_checked"], report["requests"], report["mismatches"]) == (1, 1, [])
