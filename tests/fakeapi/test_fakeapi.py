"""The simulator keeps the API's documented promises, misbehaves on request, and knows the truth."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncer.endpoints import Endpoint
from syncer.fakeapi import Dataset, FakeApi, FakeApiConfig
from syncer.fakeapi.cli import add_arguments, config_from, run
from syncer.fakeapi.mixing import Permutation
from syncer.fakeapi.render import CsvFormat, CsvRenderer
from syncer.fakeapi.timeline import Timeline
from syncer.timespec import isoformat_z
from tests.fakeapi.support import (
    ALL,
    ANCHOR,
    EVER,
    FAR,
    auth,
    config,
    csv_line,
    get_csv,
    parse_csv,
    unparseable,
)


def frozen_now(cfg: FakeApiConfig) -> tuple[datetime, Dataset]:
    """A data set whose clock stands still, so the test and the server agree on "now"."""
    instant = time.time()
    dataset = Dataset(cfg, clock=lambda: instant)
    return datetime.fromtimestamp(int(instant * 1000) / 1000, timezone.utc), dataset


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    async with FakeApi(config()) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=auth()) as session:
        yield session


def last_wins(endpoint: Endpoint, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row[endpoint.key]: row for row in rows}


def keyed(endpoint: Endpoint, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = last_wins(endpoint, rows)
    assert len(out) == len(rows), "keys must be unique"
    return out


# --- auth, parameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, auth("wrong-key"), auth("demo-key", "secret"), {"Authorization": "Bearer demo-key"}],
)
@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_bad_credentials_get_401_json(
    api: FakeApi, headers: dict[str, str], endpoint: Endpoint
) -> None:
    async with aiohttp.ClientSession(headers=headers) as session:
        for path in (endpoint.csv_path, endpoint.json_path):
            async with session.get(api.url + path) as response:
                assert response.status == 401
                body = await response.json()
                assert set(body) == {"error", "message"}
    assert api.stats.count(status=401) == 2


@pytest.mark.parametrize(
    ("start", "end", "want_start", "want_end"),
    [
        ("2025-07-25", "2025-07-28", "2025-07-25T00:00:00Z", "2025-07-28T00:00:00Z"),
        ("2025-07-25T06:30:00Z", "2025-07-26T18:00:00.250Z", "2025-07-25T06:30:00Z",
         "2025-07-26T18:00:00.250Z"),
        ("2025-07-25T09:30:00+09:00", "2025-07-26T00:00:00+02:00", "2025-07-25T00:30:00Z",
         "2025-07-25T22:00:00Z"),
        ("2025-07-25T06:30:00", "now", "2025-07-25T06:30:00Z", None),
        ("3d", "1d", None, None),
        ("7d", "0d", None, None),
    ],
)  # fmt: skip
async def test_date_forms_select_the_right_window(
    http: aiohttp.ClientSession, start: str, end: str, want_start: str | None,
    want_end: str | None,
) -> None:  # fmt: skip
    now, dataset = frozen_now(config(anchor=None, days=10))
    async with FakeApi(dataset.config, dataset) as api:
        body = await get_csv(http, api, Endpoint.COMMITS, startDate=start, endDate=end)
        lo = datetime.fromisoformat(want_start) if want_start else now - timedelta(
            days=int(start.rstrip("d")))  # fmt: skip
        if want_end:
            hi = datetime.fromisoformat(want_end)
        else:
            hi = now - timedelta(days=int(end.rstrip("d"))) if end != "now" else now
        got = parse_csv(Endpoint.COMMITS, body)
        assert got == list(reversed(api.dataset.truth(Endpoint.COMMITS, lo, hi)))
        assert all(lo <= row["created_at"] <= hi + timedelta(seconds=1) for row in got)


async def test_defaults_are_the_last_seven_days(http: aiohttp.ClientSession) -> None:
    now, dataset = frozen_now(config(anchor=None, days=20))
    async with FakeApi(dataset.config, dataset) as api:
        async with http.get(api.url + Endpoint.CHANGES.json_path) as response:
            page = await response.json()
        want = api.dataset.truth(Endpoint.CHANGES, now - timedelta(days=7), now)
        assert page["totalCount"] == len(want)
        assert (page["page"], page["pageSize"]) == (1, 100)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("startDate", "yesterday"), ("endDate", "2025-13-01"), ("startDate", "7x"),
        ("pageSize", "0"), ("pageSize", "1001"), ("pageSize", "ten"), ("page", "0"),
        ("page", "-1"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("path", [Endpoint.COMMITS.json_path, Endpoint.CHANGES.csv_path])
async def test_garbage_parameters_get_400_naming_them(
    api: FakeApi, http: aiohttp.ClientSession, param: str, value: str, path: str
) -> None:
    async with http.get(api.url + path, params={param: value}) as response:
        assert response.status == 400
        body = await response.json()
    assert param in body["message"]
    assert body["error"]


async def test_window_bounds_are_inclusive(api: FakeApi, http: aiohttp.ClientSession) -> None:
    rows = api.dataset.truth(Endpoint.CHANGES, EVER, FAR)
    first, last = rows[10], rows[20]
    body = await get_csv(
        http, api, Endpoint.CHANGES,
        startDate=isoformat_z(first["created_at"]), endDate=isoformat_z(last["created_at"]),
    )  # fmt: skip
    keys = set(keyed(Endpoint.CHANGES, parse_csv(Endpoint.CHANGES, body)))
    assert {first["change_id"], last["change_id"]} <= keys
    assert keys == {r["change_id"] for r in rows if first["created_at"] <= r["created_at"]
                    <= last["created_at"]}  # fmt: skip


# --- CSV and JSON shapes ---------------------------------------------------------------


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_csv_stream_equals_truth(
    api: FakeApi, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    body = await get_csv(http, api, endpoint)
    header = body.split(b"\n", 1)[0].decode()
    assert header == ",".join(column.name for column in endpoint.columns)
    got = parse_csv(endpoint, body)
    want = api.dataset.truth(endpoint, EVER, FAR)
    assert len(want) == (400 if endpoint is Endpoint.COMMITS else 300)
    assert got == want[::-1], "newest first, exactly the truth"
    assert b"\r\n" not in body.replace(b'\r\n"', b"")


async def test_csv_is_realistic(api: FakeApi, http: aiohttp.ClientSession) -> None:
    commits = api.dataset.truth(Endpoint.COMMITS, EVER, FAR)
    changes = api.dataset.truth(Endpoint.CHANGES, EVER, FAR)
    messages = [c["message"] or "" for c in commits]
    assert any("," in m for m in messages)
    assert any('"' in m for m in messages)
    assert any("\n" in m for m in messages)
    assert any("チーム" in m or "レート" in m for m in messages)
    assert any(c["message"] is None for c in commits)
    assert {c["is_primary_branch"] for c in commits} == {True, False, None}
    assert all(c["repo_name"] is None or c["repo_name"].startswith("company/") for c in commits)
    for c in commits:
        ai = c["tab_lines_added"] + c["composer_lines_added"]
        if c["non_ai_lines_added"] is not None:
            assert c["non_ai_lines_added"] == max(0, c["total_lines_added"] - ai)
    sources = {c["source"] for c in changes}
    assert {"TAB", "COMPOSER"} <= sources
    assert {None, "claude-4-sonnet"} & {c["model"] for c in changes}
    assert {len(c["files"]) for c in changes} >= {1, 2, 3}
    for change in changes:
        assert change["total_lines_added"] == sum(f["lines_added"] for f in change["files"])
        for entry in change["files"]:
            assert entry["file_name"].endswith("." + entry["file_extension"])
    assert len({c["user_id"] for c in commits}) >= 10


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_json_pages_cover_the_truth(
    api: FakeApi, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    items: list[dict[str, Any]] = []
    for page in (1, 2, 3, 4):
        params = {**ALL, "page": str(page), "pageSize": "120"}
        async with http.get(api.url + endpoint.json_path, params=params) as response:
            body = await response.json()
        assert (body["page"], body["pageSize"]) == (page, 120)
        assert body["totalCount"] == (400 if endpoint is Endpoint.COMMITS else 300)
        items.extend(body["items"])
    key = "commitHash" if endpoint is Endpoint.COMMITS else "changeId"
    want = api.dataset.truth(endpoint, EVER, FAR)[::-1]
    assert [item[key] for item in items] == [row[endpoint.key] for row in want]
    assert items[0]["createdAt"] == isoformat_z(want[0]["created_at"])
    if endpoint is Endpoint.CHANGES:
        assert set(items[0]) == {"changeId", "userId", "userEmail", "source", "model",
                                 "totalLinesAdded", "totalLinesDeleted", "createdAt",
                                 "metadata"}  # fmt: skip
        assert items[0]["metadata"][0].keys() == {
            "fileName", "fileExtension", "linesAdded", "linesDeleted"}  # fmt: skip
    params = {**ALL, "pageSize": "1000"}
    async with http.get(api.url + endpoint.json_path, params=params) as response:
        assert len((await response.json())["items"]) == len(want)


async def test_json_is_primary_branch_null_is_sent_as_null(http: aiohttp.ClientSession) -> None:
    """A recorded response of the real API has `"isPrimaryBranch": null`, never the key left out,
    and repository, branch, flag and message null together."""
    async with FakeApi(config(commits=3000)) as api:
        params = {**ALL, "pageSize": "1000"}
        items = []
        for page in ("1", "2", "3"):
            url = api.url + Endpoint.COMMITS.json_path
            async with http.get(url, params={**params, "page": page}) as response:
                items.extend((await response.json())["items"])
    assert all("isPrimaryBranch" in item for item in items)
    assert any(item["isPrimaryBranch"] is None for item in items)
    no_repo = [item for item in items if item["repoName"] is None]
    assert no_repo
    assert all(
        (i["branchName"], i["isPrimaryBranch"], i["message"]) == (None, None, None) for i in no_repo
    )
    assert all(len(item["commitHash"]) == 40 and len(item["userId"]) == 26 for item in items)
    assert all(item["commitTs"] is None or item["commitTs"].endswith(".000Z") for item in items)
    assert any(not item["createdAt"].endswith("000Z") for item in items)
    assert {item["commitSource"] for item in items} == {"ide", "cli", "cloud", "web"}


@pytest.mark.parametrize("form", ["email", "encoded", "numeric"])
async def test_user_filter_accepts_all_three_forms(
    api: FakeApi, http: aiohttp.ClientSession, form: str
) -> None:
    person = api.dataset.users[api.dataset.population.user_pick[0]]
    value = {"email": person.email.upper(), "encoded": person.encoded_id,
             "numeric": str(person.numeric_id)}[form]  # fmt: skip
    for endpoint in Endpoint:
        want = api.dataset.truth(endpoint, EVER, FAR, user=value)
        assert want
        assert all(row["user_id"] == person.encoded_id for row in want)
        body = await get_csv(http, api, endpoint, **ALL, user=value)
        assert parse_csv(endpoint, body) == want[::-1]
        async with http.get(api.url + endpoint.json_path, params={**ALL, "user": value}) as r:
            assert (await r.json())["totalCount"] == len(want)
    body = await get_csv(http, api, Endpoint.COMMITS, **ALL, user="nobody@example.com")
    assert parse_csv(Endpoint.COMMITS, body) == []


# --- rate limit ------------------------------------------------------------------------


async def test_rate_limit_per_endpoint_with_retry_after(http: aiohttp.ClientSession) -> None:
    async with FakeApi(config(rate_limit_requests=3, rate_limit_period=1.0)) as api:
        path = api.url + Endpoint.COMMITS.json_path
        for _ in range(3):
            async with http.get(path) as response:
                assert response.status == 200
        async with http.get(path) as response:
            assert response.status == 429
            assert int(response.headers["Retry-After"]) >= 1
            assert set(await response.json()) == {"error", "message"}
        async with http.get(api.url + Endpoint.COMMITS.csv_path) as response:
            assert response.status == 200, "each path has its own budget"
        await asyncio.sleep(1.05)
        async with http.get(path) as response:
            assert response.status == 200
        assert api.stats.rate_limited == 1
        assert api.stats.count(Endpoint.COMMITS.json_path, 200) == 4


# --- faults ----------------------------------------------------------------------------


async def test_fail_next_and_every_nth(api: FakeApi, http: aiohttp.ClientSession) -> None:
    api.faults.fail_next(2, status=503)
    statuses = []
    for _ in range(3):
        async with http.get(api.url + Endpoint.CHANGES.json_path) as response:
            statuses.append(response.status)
    assert statuses == [503, 503, 200]
    api.faults.fail_every, api.faults.every_status = 2, 502
    statuses = []
    for _ in range(4):
        async with http.get(api.url + Endpoint.CHANGES.csv_path) as response:
            statuses.append(response.status)
            await response.read()
    assert sorted(statuses) == [200, 200, 502, 502]
    assert api.stats.count(status=502) == 2


async def test_throttle_burst(api: FakeApi, http: aiohttp.ClientSession) -> None:
    api.faults.throttle_next(2, retry_after=7)
    for want in (429, 429, 200):
        async with http.get(api.url + Endpoint.COMMITS.csv_path) as response:
            assert response.status == want
            if want == 429:
                assert response.headers["Retry-After"] == "7"
            await response.read()
    assert api.stats.rate_limited == 2


async def test_cut_stream_is_an_incomplete_payload(
    api: FakeApi, http: aiohttp.ClientSession
) -> None:
    api.faults.cut_next(5000)
    async with http.get(api.url + Endpoint.COMMITS.csv_path, params=ALL) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    body = await get_csv(http, api, Endpoint.COMMITS)  # only the next one was cut
    assert len(parse_csv(Endpoint.COMMITS, body)) == 400
    assert api.stats.streams_cut == 1


async def test_slow_streaming(http: aiohttp.ClientSession) -> None:
    async with FakeApi(config(commits=5000, chunk_delay=0.1)) as api:
        started = time.monotonic()
        body = await get_csv(http, api, Endpoint.COMMITS)
        assert time.monotonic() - started >= 0.2  # > 512 KiB: at least three chunks
        assert len(parse_csv(Endpoint.COMMITS, body)) == 5000


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_bom_and_crlf_keep_the_same_rows(
    api: FakeApi, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    api.faults.bom = api.faults.crlf = True
    body = await get_csv(http, api, endpoint)
    assert body.startswith(b"\xef\xbb\xbf" + endpoint.columns[0].name.encode())
    assert body.split(b"\n", 1)[0].endswith(b"\r")
    assert body.endswith(b"\r\n")
    assert parse_csv(endpoint, body) == api.dataset.truth(endpoint, EVER, FAR)[::-1]


@pytest.mark.parametrize("mode", ["append", "insert"])
@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_extra_column_and_metadata_key(
    api: FakeApi, http: aiohttp.ClientSession, mode: str, endpoint: Endpoint
) -> None:
    api.faults.extra_column = mode
    body = await get_csv(http, api, endpoint)
    header = body.split(b"\n", 1)[0].decode().split(",")
    assert "agent_version" in header
    assert (header[-1] == "agent_version") == (mode == "append")
    assert parse_csv(endpoint, body) == api.dataset.truth(endpoint, EVER, FAR)[::-1]
    record = next(csv.DictReader(io.StringIO(body.decode(), newline="")))
    assert {"agent_version": record["agent_version"]} == api.faults.unknown_fields(
        record[endpoint.key])  # fmt: skip
    if endpoint is Endpoint.CHANGES:
        entry = json.loads(record["metadata_json"])[0]
        assert api.faults.unknown_file_fields().items() <= entry.items()


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_permuted_columns(
    api: FakeApi, http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    api.faults.permute_columns = True
    body = await get_csv(http, api, endpoint)
    header = body.split(b"\n", 1)[0].decode().split(",")
    assert sorted(header) == sorted(c.name for c in endpoint.columns)
    assert header != [c.name for c in endpoint.columns]
    assert parse_csv(endpoint, body) == api.dataset.truth(endpoint, EVER, FAR)[::-1]


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_malformed_rows_are_known_and_not_in_truth(
    http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    async with FakeApi(config(malformed_rate=0.1)) as api:
        body = await get_csv(http, api, endpoint)
        good, bad = unparseable(endpoint, body)
        known = api.dataset.malformed_keys(endpoint, EVER, FAR)
        assert bad == known
        assert len(known) > 10
        truth = api.dataset.truth(endpoint, EVER, FAR)
        assert good == truth[::-1]
        assert not known & {row[endpoint.key] for row in truth}
        api.faults.malformed_rate = 0
        assert len(api.dataset.truth(endpoint, EVER, FAR)) == len(truth) + len(known)


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_duplicates_across_pages_last_wins(
    http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    async with FakeApi(config(duplicate_rate=0.2, csv_page_rows=50)) as api:
        rows = parse_csv(endpoint, await get_csv(http, api, endpoint))
        final = last_wins(endpoint, rows)
        assert len(rows) - len(final) > 20, "some keys appear twice"
        want = api.dataset.truth(endpoint, EVER, FAR)
        assert final == {row[endpoint.key]: row for row in want}
        firsts: dict[str, Any] = {}
        for row in rows:
            firsts.setdefault(row[endpoint.key], row)
        assert any(firsts[k] != final[k] for k in final), "some copies carry updated values"


@pytest.mark.parametrize(("mode", "low", "high"), [("all", 1.0, 1.0), ("0.5", 0.1, 0.9)])
async def test_privacy_mode_omits_file_names(
    http: aiohttp.ClientSession, mode: str, low: float, high: float
) -> None:
    async with FakeApi(config(privacy_mode=mode)) as api:
        body = await get_csv(http, api, Endpoint.CHANGES)
        records = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
        entries = [e for r in records for e in json.loads(r["metadata_json"])]
        hidden = sum("fileName" not in e for e in entries) / len(entries)
        assert low <= hidden <= high
        assert all(e.get("fileName", "") is not None for e in entries), "absent, not null"
        assert parse_csv(Endpoint.CHANGES, body) == api.dataset.truth(Endpoint.CHANGES, EVER,
                                                                      FAR)[::-1]  # fmt: skip


# --- determinism, laziness, speed --------------------------------------------------------


async def test_same_seed_same_bytes(http: aiohttp.ClientSession) -> None:
    bodies = []
    for seed in (5, 5, 6):
        async with FakeApi(config(seed=seed, duplicate_rate=0.05)) as api:
            bodies.append(b"".join([await get_csv(http, api, e) for e in Endpoint]))
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


@pytest.mark.slow
def test_a_million_rows_cost_nothing_until_served() -> None:
    # Memory, not time (a timed assertion fails on a busy machine): a data set's size must
    # not depend on its row count, and an hour of truth costs that hour's rows.
    def allocated(make: Callable[[], object]) -> tuple[int, object]:
        tracemalloc.start()
        try:
            made = make()
            return tracemalloc.get_traced_memory()[1], made
        finally:
            tracemalloc.stop()

    small, _ = allocated(lambda: Dataset(config(commits=1_000, changes=1_000, days=30)))
    big, made = allocated(lambda: Dataset(config(commits=1_000_000, changes=1_000_000, days=30)))
    assert big < small + (1 << 20), f"{big:,} bytes for 1M rows vs {small:,} for 1k"
    assert isinstance(made, Dataset)
    data = made
    start = ANCHOR - timedelta(days=3)
    peak, hour = allocated(lambda: data.truth(Endpoint.COMMITS, start, start + timedelta(hours=1)))
    assert isinstance(hour, list)
    assert 1200 <= len(hour) <= 1600  # 1M rows over 30 days ≈ 1389 an hour
    assert peak < 2_000 * len(hour), f"{peak:,} bytes for {len(hour)} rows"
    assert data.get(Endpoint.COMMITS, hour[5]["commit_hash"]) == hour[5]


@pytest.mark.parametrize(("rate", "expected"), [
    (0.0, {"TAB", "COMPOSER"}),  # the doc: source "TAB" | "COMPOSER"
    (0.1, {"TAB", "COMPOSER", "CLI", "BACKGROUND_AGENT"}),  # the alpha API grows
])  # fmt: skip
def test_sources_are_the_documented_ones_unless_asked_otherwise(
    rate: float, expected: set[str]
) -> None:
    data = Dataset(config(changes=3000, new_source_rate=rate))
    sources = [data.sources[Endpoint.CHANGES].typed(i, 0)["source"] for i in range(3000)]
    assert set(sources) == expected
    tab = sources.count("TAB") / len(sources)
    assert 0.55 < tab < 0.65, "TAB is the larger share, as in the doc's examples"


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_fast_rendering_equals_field_rendering(endpoint: Endpoint) -> None:
    data = Dataset(config(commits=3000, changes=3000, privacy_mode="0.4"))
    source = data.sources[endpoint]
    renderer = CsvRenderer(data, endpoint, CsvFormat())
    fast = source.csv_lines(range(3000))
    for index in range(3000):
        assert fast[index] == ",".join(source.csv_fields(index, 0))
        assert renderer.row_line(source.typed(index, 0)) == fast[index] + "\n"
        assert source.index_of(source.key(index)) == index
    values = list(csv.reader(io.StringIO("\n".join(fast) + "\n", newline="")))
    assert [csv_line(row).decode() for row in values] == [line + "\n" for line in fast], (
        "quoted exactly as csv.writer with QUOTE_MINIMAL"
    )


@given(
    count=st.integers(min_value=0, max_value=5000),
    span=st.integers(min_value=1, max_value=10**10),
    live=st.sampled_from([0.0, 1.0, 600.0]),
    probe=st.integers(min_value=-(10**6), max_value=2 * 10**10),
)
def test_windows_map_to_index_ranges(count: int, span: int, live: float, probe: int) -> None:
    timeline = Timeline(count, 10**9, 10**9 + span, live)
    stamps = [timeline.created_ms(i) for i in range(0, count + 50, max(1, count // 500))]
    assert stamps == sorted(stamps)
    ms = 10**9 + probe
    first = timeline.first_at_or_after(ms)
    assert first == 0 or timeline.created_ms(first - 1) < ms
    if first < count or live:
        assert timeline.created_ms(first) >= ms


@given(st.integers(min_value=0, max_value=2**35), st.integers(min_value=0, max_value=10**6))
def test_keys_map_back_to_rows(index: int, seed: int) -> None:
    permutation = Permutation(36, seed)
    assert permutation.inverse(permutation.forward(index)) == index


async def test_block_cache_serves_identical_bytes(http: aiohttp.ClientSession) -> None:
    async with FakeApi(config(commits=5000, cache_mb=4)) as api:
        first = await get_csv(http, api, Endpoint.COMMITS)
        cache = api.simulator.cache
        assert cache is not None
        assert cache.blocks
        assert await get_csv(http, api, Endpoint.COMMITS) == first


# --- mutations and live data -------------------------------------------------------------


async def test_mutations_show_in_stream_and_truth(
    api: FakeApi, http: aiohttp.ClientSession
) -> None:
    data = api.dataset
    late = data.add(
        Endpoint.COMMITS,
        commit_hash="late",
        created_at=ANCHOR - timedelta(days=4),
        commit_ts=ANCHOR - timedelta(days=5, microseconds=1500),
        branch_name="",
    )
    assert late["commit_ts"].microsecond == 998_000  # what the CSV carries: milliseconds
    assert late["branch_name"] is None  # an empty field reads as null
    fresh = data.add(Endpoint.COMMITS, commit_hash="fresh", message='new, "quoted"\nline')
    change = next(c for c in data.truth(Endpoint.CHANGES, EVER, FAR) if len(c["files"]) >= 2)
    fewer = data.update(Endpoint.CHANGES, change["change_id"], files=change["files"][:1],
                        total_lines_added=change["files"][0]["lines_added"])  # fmt: skip
    gone = data.truth(Endpoint.CHANGES, EVER, FAR)[0]["change_id"]
    data.remove(Endpoint.CHANGES, gone)
    with pytest.raises(ValueError, match="already exists"):
        data.add(Endpoint.COMMITS, commit_hash="late")

    commits = keyed(Endpoint.COMMITS, parse_csv(Endpoint.COMMITS, await get_csv(
        http, api, Endpoint.COMMITS, startDate="2000-01-01", endDate="now")))  # fmt: skip
    assert commits["late"] == late
    assert commits["fresh"] == fresh
    assert commits == keyed(Endpoint.COMMITS, data.truth(Endpoint.COMMITS, EVER, "now"))
    changes = keyed(Endpoint.CHANGES, parse_csv(Endpoint.CHANGES, await get_csv(
        http, api, Endpoint.CHANGES)))  # fmt: skip
    assert changes[change["change_id"]] == fewer
    assert len(fewer["files"]) == 1
    assert gone not in changes
    assert changes == keyed(Endpoint.CHANGES, data.truth(Endpoint.CHANGES, EVER, FAR))
    moved = data.update(Endpoint.COMMITS, late["commit_hash"], created_at=ANCHOR - timedelta(
        days=1))  # fmt: skip
    window = data.truth(Endpoint.COMMITS, ANCHOR - timedelta(days=2), ANCHOR)
    assert moved in window


async def test_live_rows_appear_as_time_passes(http: aiohttp.ClientSession) -> None:
    clock = [ANCHOR.timestamp() + 60]
    data = Dataset(config(live_rate=60.0), clock=lambda: clock[0])
    async with FakeApi(data.config, dataset=data) as api:
        params = {"startDate": "2025-07-30", "endDate": "2100-01-01"}
        before = parse_csv(Endpoint.CHANGES, await get_csv(http, api, Endpoint.CHANGES, **params))
        clock[0] += 120
        after = parse_csv(Endpoint.CHANGES, await get_csv(http, api, Endpoint.CHANGES, **params))
    assert len(after) - len(before) == 120
    assert max(r["created_at"] for r in after) <= datetime.fromtimestamp(clock[0], timezone.utc)


async def test_restart_on_the_same_port(http: aiohttp.ClientSession) -> None:
    api = FakeApi(config())
    await api.start()
    url = api.url
    await api.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(url + Endpoint.COMMITS.json_path):
            pass
    await api.start()
    try:
        assert api.url == url
        async with http.get(url + Endpoint.COMMITS.json_path) as response:
            assert response.status == 200
    finally:
        await api.stop()


async def test_cli_serves_until_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--port", "0", "--commits", "50", "--privacy-mode", "all",
                              "--extra-column", "insert", "--crlf"])  # fmt: skip
    assert config_from(args).privacy_mode == "all"
    task = asyncio.create_task(run(args))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if "http://127.0.0.1:" in capsys.readouterr().out:
            break
    else:
        pytest.fail("no start-up line")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_redirected_csv_is_a_one_time_link_that_needs_no_key(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeApi(config()) as api:
        plain = await get_csv(http, api, Endpoint.COMMITS)
        api.faults.redirect_csv = "other-host"
        url = api.url + Endpoint.COMMITS.csv_path
        async with http.get(url, params=ALL, allow_redirects=False) as response:
            assert response.status == 302
            link = response.headers["Location"]
        assert link.startswith(f"http://localhost:{api.port}/downloads/")
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(link) as response:
                assert response.status == 200
                assert await response.read() == plain
            async with anonymous.get(link) as response:
                assert response.status == 404, "a link serves once"
        assert api.stats.count(Endpoint.COMMITS.csv_path) == 2, "downloads are not API requests"
