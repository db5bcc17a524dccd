"""Data that drifts behind a client's back: rows arriving late, rows withdrawn, short answers.

- `add_late`: rows whose createdAt lies hours behind the newest row (beyond any lookback), as
  late ingestion or a range filtered on another timestamp would look to a client.
- `withdraw`: existing rows (generated or added) no longer served, as after a removed user or
  a privacy request; `Dataset.remove` for one key.
- `shorten`: a CSV response that ends cleanly but holds fewer rows than the API's `totalCount`
  (the `short_rows` fault).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from syncer.endpoints import Endpoint
from syncer.fakeapi.dataset import Dataset, Piece, Row
from syncer.fakeapi.mixing import mix64
from syncer.fakeapi.timestamps import from_ms


def newest(dataset: Dataset, endpoint: Endpoint) -> Row:
    """The visible row with the greatest createdAt."""
    rows = dataset.truth(endpoint, from_ms(0), from_ms(dataset.now_ms()))
    return max(rows, key=lambda row: row["created_at"])


def add_late(
    dataset: Dataset, endpoint: Endpoint, count: int, behind: timedelta, **fields: Any
) -> list[Row]:
    """Add `count` rows created `behind` the newest row's createdAt (a millisecond apart)."""
    at = newest(dataset, endpoint)["created_at"] - behind
    return [
        dataset.add(endpoint, created_at=at + timedelta(milliseconds=i), **fields)
        for i in range(count)
    ]


def withdraw(dataset: Dataset, endpoint: Endpoint, rows: list[Row], count: int) -> list[str]:
    """Stop serving `count` of `rows` (a seeded choice spread over them); their keys."""
    keys = sorted(row[endpoint.key] for row in rows)
    chosen: list[str] = []
    for i in range(count):
        key = keys[mix64(i + 17) % len(keys)]
        while key in chosen:
            key = keys[(keys.index(key) + 1) % len(keys)]
        chosen.append(key)
    for key in chosen:
        dataset.remove(endpoint, key)
    return chosen


def shorten(pieces: list[Piece], rows: int) -> list[Piece]:
    """The window's pieces without their `rows` oldest rows (served last, newest first)."""
    out = list(pieces)
    while rows > 0 and out:
        head = out[0]
        if isinstance(head, range) and len(head) > rows:
            out[0] = head[rows:]
            return out
        rows -= len(head) if isinstance(head, range) else 1
        out.pop(0)
    return out
