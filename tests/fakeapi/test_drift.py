"""The simulator's drift: rows behind the newest, withdrawn rows, and a cleanly short answer,
with the JSON `totalCount` following the truth exactly, both ends of a range included."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import aiohttp

from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi, FakeApiConfig
from syncer.fakeapi.drift import add_late, newest, withdraw
from syncer.timespec import isoformat_z
from tests.fakeapi.support import auth

ANCHOR = datetime(2025, 7, 31, tzinfo=timezone.utc)
COMMITS = Endpoint.COMMITS


async def get(sim: FakeApi, path: str, start: datetime, end: datetime, **extra: str) -> str:
    params = {"startDate": isoformat_z(start), "endDate": isoformat_z(end), **extra}
    async with (
        aiohttp.ClientSession(headers=auth()) as http,
        http.get(sim.url + path, params=params) as resp,
    ):
        assert resp.status == 200
        return await resp.text()


async def total(sim: FakeApi, start: datetime, end: datetime) -> int:

    return int(
        json.loads(await get(sim, COMMITS.json_path, start, end, pageSize="1"))["totalCount"]
    )


async def csv_keys(sim: FakeApi, start: datetime, end: datetime) -> list[str]:
    text = await get(sim, COMMITS.csv_path, start, end)
    return [row["commit_hash"] for row in csv.DictReader(io.StringIO(text))]


async def test_total_count_follows_the_truth_with_both_ends_included() -> None:
    config = FakeApiConfig(commits=300, changes=10, days=10, seed=2, anchor=ANCHOR)
    async with FakeApi(config) as sim:
        rows = sim.dataset.truth(COMMITS, ANCHOR - timedelta(days=11), ANCHOR)
        first, last = rows[10]["created_at"], rows[20]["created_at"]
        assert await total(sim, first, last) == 11, "both ends are inside"
        after = first + timedelta(milliseconds=1)
        assert await total(sim, after, last) == 10

        late = add_late(sim.dataset, COMMITS, 2, behind=timedelta(hours=3))
        top = newest(sim.dataset, COMMITS)["created_at"]
        assert [r["created_at"] for r in late] == [
            top - timedelta(hours=3),
            top - timedelta(hours=3, milliseconds=-1),
        ]
        gone = withdraw(sim.dataset, COMMITS, rows[10:21], 3)
        assert len(set(gone)) == 3
        whole = ANCHOR - timedelta(days=11), ANCHOR
        want = len(sim.dataset.truth(COMMITS, *whole))
        assert want == 300 + 2 - 3
        assert await total(sim, *whole) == want
        assert await total(sim, first, last) == 11 - 3
        assert set(gone).isdisjoint(await csv_keys(sim, *whole))


async def test_a_shortened_csv_answer_ends_cleanly_without_its_oldest_rows() -> None:
    config = FakeApiConfig(commits=300, changes=10, days=10, seed=2, anchor=ANCHOR)
    async with FakeApi(config) as sim:
        whole = ANCHOR - timedelta(days=11), ANCHOR
        full = await csv_keys(sim, *whole)
        sim.faults.shorten_next(rows=4)
        short = await csv_keys(sim, *whole)
        assert short == full[:-4], "newest first: the oldest four are left out"
        assert await total(sim, *whole) == len(full)
        assert await csv_keys(sim, *whole) == full, "only the next answer is short"
