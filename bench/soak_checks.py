"""The soak's final checks: the database against the simulator's truth row by row, quarantined
rows, 429s, health, memory and logs. Each check is a line of the summary: a name, a figure, ok."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import asyncpg

from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi

EVER = datetime(2000, 1, 1, tzinfo=timezone.utc)
FAR = datetime(2100, 1, 1, tzinfo=timezone.utc)
_FILE_FIELDS = ("file_name", "file_extension", "lines_added", "lines_deleted")


@dataclass
class Check:
    """One line of the verdict."""

    name: str
    figure: str
    ok: bool


def _names(endpoint: Endpoint) -> list[str]:
    return [c.name for c in endpoint.columns if c.name != "metadata_json"]


def truth(sim: FakeApi, endpoint: Endpoint) -> dict[str, dict[str, Any]]:
    """The simulator's rows, keyed, with the contract's fields (files as lists)."""
    out = {}
    for row in sim.dataset.truth(endpoint, EVER, FAR):
        item = {name: row[name] for name in _names(endpoint)}
        if endpoint is Endpoint.CHANGES:
            item["files"] = [{k: f.get(k) for k in _FILE_FIELDS} for f in row["files"]]
        out[row[endpoint.key]] = item
    return out


async def stored(conn: asyncpg.Connection, endpoint: Endpoint) -> dict[str, dict[str, Any]]:
    """The table's rows in the same shape as `truth`."""
    rows = await conn.fetch(f"SELECT {', '.join(_names(endpoint))} FROM {endpoint.table}")
    out = {r[endpoint.key]: dict(r) for r in rows}
    if endpoint is Endpoint.CHANGES:
        for item in out.values():
            item["files"] = []
        files = await conn.fetch(
            f"SELECT change_id, {', '.join(_FILE_FIELDS)} FROM ai_code_change_files "
            "ORDER BY change_id, file_index"
        )
        for f in files:
            out[f["change_id"]]["files"].append({k: f[k] for k in _FILE_FIELDS})
    return out


def difference(
    db: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]], history: dict[str, list[str]]
) -> str:
    """'' when equal, else a short account of what differs (with what the driver did to it)."""
    missing = sorted(set(want) - set(db))
    unexpected = sorted(set(db) - set(want))
    differing = sorted(k for k in set(db) & set(want) if db[k] != want[k])
    if not (missing or unexpected or differing):
        return ""
    parts = [
        f"{len(missing)} missing {missing[:3]}",
        f"{len(unexpected)} unexpected {unexpected[:3]}",
        f"{len(differing)} differing",
    ]
    for key in missing[:3]:
        parts.append(f"{key}: created_at {want[key]['created_at']}, {history.get(key, [])}")
    for key in unexpected[:3]:
        parts.append(f"{key}: created_at {db[key]['created_at']}, {history.get(key, [])}")
    for key in differing[:2]:
        fields = {f: (db[key].get(f), v) for f, v in want[key].items() if db[key].get(f) != v}
        parts.append(f"{key}: (db, truth) {fields}, {history.get(key, [])}")
    return "; ".join(parts)


async def equal_to_truth(
    conn: asyncpg.Connection, sim: FakeApi, history: dict[str, list[str]]
) -> dict[Endpoint, str]:
    """Per endpoint, '' when the table equals the truth, else what differs.

    One snapshot for every table: the daemon keeps running passes while this reads, and a
    change committed between reading the changes and reading their files is not a difference.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = {e: await stored(conn, e) for e in Endpoint}
    return {e: difference(rows[e], truth(sim, e), history) for e in Endpoint}


async def quarantined(
    conn: asyncpg.Connection, malformed: dict[Endpoint, set[str]]
) -> tuple[int, int]:
    """(malformed rows served, of them found in rejected_rows by their key)."""
    found = total = 0
    for endpoint, keys in malformed.items():
        raws = [
            r["raw"]
            for r in await conn.fetch(
                "SELECT raw FROM rejected_rows WHERE endpoint = $1", endpoint.value
            )
        ]
        total += len(keys)
        found += sum(any(key in raw for raw in raws) for key in keys)
    return total, found


def tracebacks(*texts: str) -> int:
    """How many Python tracebacks the logs hold."""
    return sum(text.count("Traceback (most recent call last)") for text in texts)
