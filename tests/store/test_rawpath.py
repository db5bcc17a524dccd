"""The raw fast path (CSV bytes COPied as they are, typed by the server) gives exactly what the
typed path gives: the same rows, the same rejected rows with the same reasons, the same counts,
the same mark — and both equal the simulator's truth, row by row."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

import syncer.store.rawsql
import syncer.store.writer
from syncer.commands import sync_command
from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi
from syncer.parse.blocks import raw_columns
from syncer.results import BatchCounts
from syncer.store.batch import Batch, RawBatch
from syncer.store.db import to_libpq_url
from syncer.store.mark import Turn
from syncer.store.store import Store
from syncer.store.writer import BatchWriter
from tests.csvpath import raw_block
from tests.support import last_runs, settings_for, sim_config
from tests.truth import EVER, FAR, assert_equals_truth

NOW = datetime.now(timezone.utc)


class RawStats:
    """How many blocks the raw path wrote, and how many fell back to the typed path."""

    def __init__(self) -> None:
        self.raw = 0
        self.fallback = 0


@pytest.fixture
def stats(monkeypatch: pytest.MonkeyPatch) -> RawStats:
    counted = RawStats()
    original = syncer.store.rawsql.prepare_raw

    async def counting(*args: Any, **kwargs: Any) -> None:
        try:
            await original(*args, **kwargs)
        except asyncpg.PostgresError:
            counted.fallback += 1
            raise
        counted.raw += 1

    monkeypatch.setattr(syncer.store.writer, "prepare_raw", counting)
    return counted


# --- the whole engine, both paths, against the simulator ---------------------------------------

CASES: dict[str, dict[str, Any]] = {
    "plain": {},
    "bom": {"bom": True},
    "crlf": {"crlf": True},
    "duplicates": {"duplicate_rate": 0.2},
    "privacy": {"privacy_mode": "0.5"},
    "permuted": {"permute_columns": True},
}


THREE_FILES = [
    {"file_name": f"src/f{i}.py", "file_extension": "py", "lines_added": i, "lines_deleted": 0}
    for i in range(3)
]


@pytest.mark.parametrize("path", ["raw", "typed"])
@pytest.mark.parametrize("case", list(CASES))
async def test_both_paths_equal_truth(case: str, path: str, clean_db: str, stats: RawStats) -> None:
    async with FakeApi(sim_config(**CASES[case])) as sim:
        settings = settings_for(sim, clean_db, SYNC_BATCH_ROWS=40, SYNC_RAW_PATH=path == "raw")
        data = sim.dataset
        data.add(Endpoint.CHANGES, change_id="recent", files=THREE_FILES)
        assert await sync_command(settings) == 0
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
        await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)
        if path == "raw":
            assert stats.raw > 2
            assert stats.fallback == 0
        else:
            assert stats.raw == 0

        # updated rows, a change re-served with fewer files, then nothing new at all
        commit = max(data.truth(Endpoint.COMMITS, EVER, FAR), key=lambda r: r["created_at"])
        data.update(Endpoint.COMMITS, commit["commit_hash"], message='new "text",\nhere')
        data.update(Endpoint.CHANGES, "recent", files=THREE_FILES[:1])
        assert await sync_command(settings) == 0
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
        await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)
        runs = await last_runs(clean_db)
        assert [(r["rows_inserted"], r["rows_updated"]) for r in runs[-2:]] == [(0, 1), (0, 1)]

        assert await sync_command(settings) == 0
        runs = await last_runs(clean_db)
        assert [(r["rows_inserted"], r["rows_updated"]) for r in runs[-2:]] == [(0, 0), (0, 0)]
        assert all(r["rows_unchanged"] > 0 for r in runs[-2:])


async def test_rows_written_by_one_path_are_unchanged_for_the_other(
    clean_db: str, stats: RawStats
) -> None:
    async with FakeApi(sim_config(privacy_mode="0.3")) as sim:
        settings = settings_for(sim, clean_db, SYNC_BATCH_ROWS=100)
        typed = settings_for(sim, clean_db, SYNC_BATCH_ROWS=100, SYNC_RAW_PATH=False)
        assert await sync_command(typed) == 0
        assert stats.raw == 0
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            before = await conn.fetch("SELECT ctid::text FROM ai_code_change_files ORDER BY 1")
            assert await sync_command(settings) == 0  # the raw path now
            assert stats.raw > 0
            after = await conn.fetch("SELECT ctid::text FROM ai_code_change_files ORDER BY 1")
        finally:
            await conn.close()
        assert before == after, "the two paths must agree on files_digest"
        runs = await last_runs(clean_db)
        assert [(r["rows_inserted"], r["rows_updated"]) for r in runs[-2:]] == [(0, 0), (0, 0)]


async def test_malformed_rows_fall_back_and_only_they_are_quarantined(
    clean_db: str, stats: RawStats
) -> None:
    async with FakeApi(sim_config(malformed_rate=0.05)) as sim:
        assert await sync_command(settings_for(sim, clean_db, SYNC_BATCH_ROWS=50)) == 0
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
        await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)
        assert stats.fallback > 0
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            for endpoint in Endpoint:
                bad = sim.dataset.malformed_keys(endpoint, EVER, NOW + timedelta(days=1))
                assert bad
                rows = await conn.fetch(
                    "SELECT raw, reason FROM rejected_rows WHERE endpoint = $1", endpoint.value
                )
                assert len(rows) == len(bad)
                assert {k for k in bad if any(k in r["raw"] for r in rows)} == bad
        finally:
            await conn.close()


async def test_an_unknown_column_reads_the_window_the_typed_way(
    clean_db: str, stats: RawStats
) -> None:
    async with FakeApi(sim_config(extra_column="insert")) as sim:
        assert await sync_command(settings_for(sim, clean_db)) == 0
        await assert_equals_truth(clean_db, sim, Endpoint.COMMITS)
        await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)
        assert stats.raw == 0


# --- crafted records: each one through both paths -------------------------------------------

#: the first document's 17 columns (`commit_source` came later: tests of its own cover it)
COMMIT_HEADER = ",".join(c.name for c in Endpoint.COMMITS.columns if c.name != "commit_source")
GOOD_COMMIT = (
    'h{n},u1,a@b.c,org/repo,main,{flag},{num},2,3,4,5,6,7,8,"msg, ""q""\n日本",{ts},{created}'
)
FLAGS = ["true", "false", "", '""', "yes", "no", "1", "t", "TRUE", " true", "True", "on"]
NUMBERS = ["0", "-0", " 12", "+5", "007", "1_000", "12.0", "1e3", "9223372036854775807"]
NUMBERS += ["9223372036854775808", "-9223372036854775808", "0x10", "0X1F", "0o14", "-0b101"]
NUMBERS += ["١٢", "", "abc"]
STAMPS = [
    "2025-07-30T14:12:30Z",
    "2025-07-30T14:12:30.123456Z",
    "2025-07-30T14:12:30.1Z",
    "2025-07-30T14:12:30.1234567Z",
    "2025-07-30 14:12:30",
    "2025-07-30T14:12",
    "2025-07-30T14:12:30+05:30",
    "2025-07-30T14:12:30-00:00",
    "2025-07-30T14:12:30+0530",
    "2025-07-30T14:12:30+05",
    "2025-07-30",
    "2025-07-30T24:00:00Z",
    "2025-07-30T14:12:60Z",
    "2025-02-30T14:12:30Z",
    "0000-01-01T00:00:00Z",
    "20250730T141230Z",
    " 2025-07-30T14:12:30Z",
    "yesterday",
    "epoch",
    "",
]
CREATED = "2025-07-31T00:00:00Z"


def commit_records() -> list[str]:
    records = []
    n = 0

    def add(flag: str = "true", num: str = "1", ts: str = "", created: str = CREATED) -> None:
        nonlocal n
        n += 1
        records.append(GOOD_COMMIT.format(n=n, flag=flag, num=num, ts=ts, created=created))

    for flag in FLAGS:
        add(flag=flag)
    for num in NUMBERS:
        add(num=num)
    for stamp in STAMPS:
        add(ts=stamp)
        add(created=stamp)
    records.append(",u1,,,,true,1,2,3,4,5,6,7,8,no key," + CREATED)
    records.append('"",u1,,,,true,1,2,3,4,5,6,7,8,quoted empty key,' + CREATED)
    records.append("h-short,u1,,,true")
    records.append("h-long,u1,,,,true,1,2,3,4,5,6,7,8,m,," + CREATED + ",x")
    records.append("h-nul,u1,,,,true,1,2,3,4,5,6,7,8,a\x00b,," + CREATED)
    records.append('h-quote,u1,,,,true,1,2,3,4,5,6,7,8,a"b"c,,' + CREATED)
    return records


#: A header without the optional commit_ts column, in another order: COPY leaves it NULL.
SHORT_HEADER = "created_at,message,commit_hash,user_id,is_primary_branch,total_lines_added"


def short_records() -> list[str]:
    return [
        f'{CREATED},"m, 1",s1,u1,true,1',
        f"{CREATED},m2,s2,,,",
        f"{CREATED},m3,s3,u3,yes,1",
        "2025-07-31T01:00:00+01:00,m4,s4,u4,false,-7",
        "bad,m5,s5,u5,true,1",
    ]


CHANGE_HEADER = ",".join(c.name for c in Endpoint.CHANGES.columns)
METADATA = [
    "",
    "[]",
    '[{"fileName":"a.py","fileExtension":"py","linesAdded":1,"linesDeleted":0}]',
    '[{"fileName":"a.py"},{"fileExtension":"ts","linesAdded":-0}]',
    '[{"fileName":null,"fileExtension":null,"linesAdded":null,"linesDeleted":null}]',
    '[{"fileName":"a","x":1,"y":{"z":[1,"2",null]}}]',
    '[{"fileName":"a","fileName":"b"}]',
    '[{"fileName":"日本\\u00e9\\n"}]',
    '[{"linesAdded":1e2}]',
    '[{"linesAdded":12.0}]',
    '[{"linesAdded":true}]',
    '[{"linesAdded":"3"}]',
    '[{"linesAdded":9223372036854775808}]',
    '[{"fileName":5}]',
    '[{"fileName":"a\\u0000b"}]',
    "[1]",
    '[{"fileName":"a"},[]]',
    "{}",
    "null",
    '"[]"',
    "[{broken",
    " [] ",
]


def change_records() -> list[str]:
    records = []
    for n, metadata in enumerate(METADATA):
        quoted = '"' + metadata.replace('"', '""') + '"' if metadata else ""
        records.append(f"c{n},u1,a@b.c,TAB,gpt,1,2,{CREATED},{quoted}")
    records.append(f"c-dup,u1,,TAB,,1,2,{CREATED},[]")
    records.append('c-dup,u2,,TAB,,1,2,2025-08-01T00:00:00Z,"[{""fileName"":""z""}]"')
    records.append(f"c-bad-bool,u1,,TAB,,x,2,{CREATED},")
    return records


async def snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    return {
        "commits": await conn.fetch(
            "SELECT commit_hash, user_id, user_email, repo_name, branch_name, is_primary_branch, "
            "total_lines_added, total_lines_deleted, message, commit_ts, created_at, "
            "extra::text FROM ai_commits ORDER BY 1"
        ),
        "changes": await conn.fetch(
            "SELECT change_id, user_id, model, total_lines_added, created_at, extra::text, "
            "files_digest FROM ai_code_changes ORDER BY 1"
        ),
        "files": await conn.fetch(
            "SELECT change_id, file_index, file_name, file_extension, lines_added, "
            "lines_deleted, extra::text FROM ai_code_change_files ORDER BY 1, 2"
        ),
        "rejected": await conn.fetch(
            "SELECT endpoint, raw, reason FROM rejected_rows ORDER BY 1, 2, 3"
        ),
    }


#: A batch written on its own that moves the mark to its newest created_at.
MARK = Turn(advance=True)


async def write_each(
    store: Store, endpoint: Endpoint, header: str, records: list[str], raw: bool
) -> list[tuple[BatchCounts, datetime | None]]:
    """Each record as a block of its own, then all of them as one block."""
    blocks = [(record + "\n").encode() for record in records]
    blocks.append(b"".join(blocks))
    results = []
    async with BatchWriter.open(store) as writer:
        for data in blocks:
            block = raw_block(header, data)
            columns = raw_columns(endpoint, block.names)
            if raw and columns is not None and block.plain:
                raw_batch = RawBatch(endpoint, columns, block)
                results.append(await writer.write_raw(raw_batch, run_id="r", turn=MARK))
            else:
                batch = Batch.parse(endpoint, block)
                counts = await writer.write(batch, run_id="r", turn=MARK)
                results.append((counts, batch.newest))
    return results


@pytest.mark.parametrize(
    ("endpoint", "header", "records"),
    [
        (Endpoint.COMMITS, COMMIT_HEADER, commit_records()),
        (Endpoint.CHANGES, CHANGE_HEADER, change_records()),
        (Endpoint.COMMITS, SHORT_HEADER, short_records()),
    ],
    ids=["commits", "changes", "fewer-columns"],
)
async def test_crafted_records_give_the_same_result_on_both_paths(
    endpoint: Endpoint,
    header: str,
    records: list[str],
    clean_db: str,
    conn: asyncpg.Connection,
    stats: RawStats,
) -> None:
    results: dict[bool, Any] = {}
    for raw in (True, False):
        await conn.execute(
            "TRUNCATE ai_code_change_files, ai_code_changes, ai_commits, rejected_rows, "
            "sync_state CASCADE"
        )
        async with Store.connect(clean_db) as store:
            written = await write_each(store, endpoint, header, records, raw)
        mark = await conn.fetchval("SELECT high_water_mark FROM sync_state")
        results[raw] = (written, mark, await snapshot(conn))
    assert stats.raw > 0
    assert stats.fallback > 0
    raw_written, raw_mark, raw_db = results[True]
    typed_written, typed_mark, typed_db = results[False]
    for name in raw_db:
        assert raw_db[name] == typed_db[name], name
    assert raw_written == typed_written
    assert raw_mark == typed_mark
    assert typed_db["rejected"], "some crafted records must be rejected"
    good = typed_db["commits" if endpoint is Endpoint.COMMITS else "changes"]
    assert len(good) > 2, "and some must load"


async def test_booleans_other_than_true_false_are_rejected_alike(
    clean_db: str, conn: asyncpg.Connection
) -> None:
    records = [GOOD_COMMIT.format(n=1, flag="yes", num=1, ts="", created=CREATED)]
    records.append(GOOD_COMMIT.format(n=2, flag="false", num=1, ts="", created=CREATED))
    async with Store.connect(clean_db) as store:
        await write_each(store, Endpoint.COMMITS, COMMIT_HEADER, records, raw=True)
    rows = await conn.fetch("SELECT commit_hash, is_primary_branch FROM ai_commits")
    assert [tuple(r) for r in rows] == [("h2", False)]
    reasons = await conn.fetch("SELECT reason FROM rejected_rows")
    assert [r["reason"] for r in reasons] == ["is_primary_branch: 'yes' is not true or false"]
