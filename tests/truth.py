"""Compare what PostgreSQL holds with what the simulator says is true, row by row."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg

from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi
from syncer.store.db import to_libpq_url

EVER = datetime(2000, 1, 1, tzinfo=timezone.utc)
FAR = datetime(2100, 1, 1, tzinfo=timezone.utc)
_FILE_FIELDS = ("file_name", "file_extension", "lines_added", "lines_deleted")


def truth(
    sim: FakeApi, endpoint: Endpoint, start: datetime = EVER, end: datetime = FAR
) -> dict[str, dict[str, Any]]:
    """The simulator's rows for a window, keyed, with only the contract's fields."""
    names = [c.name for c in endpoint.columns if c.name != "metadata_json"]
    out = {}
    for row in sim.dataset.truth(endpoint, start, end):
        item = {name: row[name] for name in names}
        if endpoint is Endpoint.CHANGES:
            item["files"] = [{k: f.get(k) for k in _FILE_FIELDS} for f in row["files"]]
        out[row[endpoint.key]] = item
    return out


async def stored(url: str, endpoint: Endpoint) -> dict[str, dict[str, Any]]:
    """What the database holds for an endpoint, in the same shape as `truth`."""
    names = [c.name for c in endpoint.columns if c.name != "metadata_json"]
    conn = await asyncpg.connect(to_libpq_url(url))
    try:
        rows = await conn.fetch(f"SELECT {', '.join(names)} FROM {endpoint.table}")
        out = {r[endpoint.key]: dict(r) for r in rows}
        if endpoint is Endpoint.CHANGES:
            for item in out.values():
                item["files"] = []
            files = await conn.fetch(
                f"SELECT change_id, file_index, {', '.join(_FILE_FIELDS)} "
                "FROM ai_code_change_files ORDER BY change_id, file_index"
            )
            for f in files:
                entries = out[f["change_id"]]["files"]
                assert f["file_index"] == len(entries), "file_index must be 0-based and dense"
                entries.append({k: f[k] for k in _FILE_FIELDS})
    finally:
        await conn.close()
    return out


def assert_same(db: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> None:
    """Equal key sets and equal rows; the message names the first few differences."""
    missing = sorted(set(want) - set(db))
    unexpected = sorted(set(db) - set(want))
    differing = sorted(k for k in set(db) & set(want) if db[k] != want[k])
    if missing or unexpected or differing:
        detail = [
            f"{len(missing)} missing {missing[:3]}",
            f"{len(unexpected)} unexpected {unexpected[:3]}",
            f"{len(differing)} differing",
        ]
        for key in differing[:2]:
            diff = {
                f: (db[key].get(f), want[key].get(f))
                for f in want[key]
                if db[key].get(f) != want[key][f]
            }
            detail.append(f"{key}: (db, truth) {diff}")
        raise AssertionError("; ".join(detail))


async def assert_equals_truth(
    url: str, sim: FakeApi, endpoint: Endpoint, start: datetime = EVER, end: datetime = FAR
) -> int:
    """Assert the endpoint's table equals the simulator's truth; return the row count."""
    want = truth(sim, endpoint, start, end)
    assert_same(await stored(url, endpoint), want)
    return len(want)
