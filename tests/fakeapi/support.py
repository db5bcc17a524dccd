"""What the simulator's tests share."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import datetime, timezone
from typing import Any

import aiohttp

from syncer.endpoints import Endpoint, Kind
from syncer.fakeapi import FakeApi, FakeApiConfig

ANCHOR = datetime(2025, 7, 31, tzinfo=timezone.utc)
ALL = {"startDate": "2000-01-01", "endDate": "2100-01-01"}


def auth(key: str = "demo-key", password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{key}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


EVER = datetime(2000, 1, 1, tzinfo=timezone.utc)


FAR = datetime(2100, 1, 1, tzinfo=timezone.utc)


def config(**overrides: Any) -> FakeApiConfig:
    """A small, fixed data set with a generous rate limit."""
    values: dict[str, Any] = {
        "commits": 400, "changes": 300, "days": 10, "seed": 3, "anchor": ANCHOR,
        "rate_limit_requests": 1000, "rate_limit_period": 1.0,
    }  # fmt: skip
    values.update(overrides)
    return FakeApiConfig(**values)


async def get_csv(
    http: aiohttp.ClientSession, api: FakeApi, endpoint: Endpoint, **params: str
) -> bytes:
    async with http.get(api.url + endpoint.csv_path, params=params or ALL) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        return await response.read()


def parse_csv(endpoint: Endpoint, body: bytes) -> list[dict[str, Any]]:
    """Typed rows, in stream order, with the stdlib csv module; keys as in `truth`."""
    reader = csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline=""))
    rows = []
    for record in reader:
        row = {}
        for column in endpoint.columns:
            name = "files" if column.kind is Kind.FILES else column.name
            row[name] = parse_value(column.kind, record[column.name])
        rows.append(row)
    return rows


def unparseable(endpoint: Endpoint, body: bytes) -> tuple[list[dict[str, Any]], set[str]]:
    """Rows that parse, and the keys of those that do not."""
    reader = csv.reader(io.StringIO(body.decode(), newline=""))
    names = next(reader)
    good, bad = [], set()
    for values in reader:
        try:
            assert len(values) == len(names)
            good.append(parse_csv(endpoint, (",".join(names) + "\n").encode() + csv_line(values)))
        except (AssertionError, ValueError, KeyError):
            bad.add(values[0])
    return [row for rows in good for row in rows], bad


def parse_value(kind: Kind, text: str) -> Any:
    if text == "":
        return [] if kind is Kind.FILES else None
    if kind is Kind.INT:
        return int(text)
    if kind is Kind.BOOL:
        return {"true": True, "false": False}[text]
    if kind is Kind.TIMESTAMP:
        return datetime.fromisoformat(text)
    if kind is Kind.FILES:
        return [
            {"file_name": e.get("fileName"), "file_extension": e["fileExtension"],
             "lines_added": e["linesAdded"], "lines_deleted": e["linesDeleted"]}
            for e in json.loads(text)
        ]  # fmt: skip
    return text


def csv_line(values: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue().encode()
