"""The client against the simulator over real HTTP: every value arrives typed and equal to truth.

CSV downloads go through `stream_blocks` and `parse_block`, the path a sync pass runs, in
blocks of the smallest size a pass asks for (several per response).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import datetime, timezone
from typing import Any

import pytest

from syncer.client.api import CursorClient
from syncer.client.ratelimit import Grant, RateLimiters
from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.errors import AuthError
from syncer.fakeapi import FakeApi, FakeApiConfig
from syncer.fakeapi.csvtext import AGENT_TOOL
from syncer.fakeapi.render import EXTRA_COLUMN, agent_version
from syncer.parse.rows import Rejected, Row, row_as_dict
from tests.csvpath import rows_of
from tests.support import client_settings

UTC = timezone.utc
ANCHOR = datetime(2025, 8, 1, tzinfo=UTC)
START = datetime(2025, 6, 1, tzinfo=UTC)
END = datetime(2025, 8, 2, tzinfo=UTC)
#: The smallest block a sync pass asks for.
BLOCK = 16 * 1024

COMMITS = Endpoint.COMMITS

Simulate = Callable[..., Any]


@pytest.fixture
async def simulate() -> AsyncIterator[Simulate]:
    """Start simulators on 127.0.0.1 with a fixed history; all stopped at teardown."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> FakeApi:
            options: dict[str, Any] = {"commits": 300, "changes": 300, "seed": 11, "anchor": ANCHOR}
            options.update(overrides)
            return await stack.enter_async_context(FakeApi(FakeApiConfig(**options)))

        yield start


def sim_settings(sim: FakeApi, key: str | None = None, **settings: Any) -> Settings:
    """A client's settings for `sim`, with the simulator's own rate limit."""
    own_limits = {
        "CURSOR_RATE_LIMIT_REQUESTS": sim.config.rate_limit_requests,
        "CURSOR_RATE_LIMIT_PERIOD_SECONDS": sim.config.rate_limit_period,
        "CURSOR_MAX_RETRIES": 3,
    }
    return client_settings(sim.url, key or sim.config.api_key, **{**own_limits, **settings})


def client_for(sim: FakeApi, key: str | None = None, **settings: Any) -> CursorClient:
    return CursorClient(sim_settings(sim, key, **settings), backoff_base=0.05)


def by_key(endpoint: Endpoint, items: list[Row | Rejected]) -> dict[str, dict[str, Any]]:
    """Rows as dicts by primary key, the last occurrence winning (as the engine's upserts)."""
    rows: dict[str, dict[str, Any]] = {}
    for item in items:
        if not isinstance(item, Rejected):
            named = row_as_dict(endpoint, item)
            rows[named[endpoint.key]] = named
    return rows


def assert_equal_to_truth(sim: FakeApi, endpoint: Endpoint, got: dict[str, dict[str, Any]]) -> None:
    truth = {row[endpoint.key]: row for row in sim.dataset.truth(endpoint, START, END)}
    assert len(truth) > 100
    assert sorted(got) == sorted(truth)
    for key, expected in truth.items():
        assert got[key] == expected, key


@pytest.mark.parametrize("endpoint", list(Endpoint))
@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"bom": True},
        {"crlf": True},
        {"permute_columns": True},
        {"bom": True, "crlf": True, "permute_columns": True},
        {"privacy_mode": "all"},
        {"duplicate_rate": 0.2},
        {"order": "asc", "csv_page_rows": 7},
    ],
    ids=["plain", "bom", "crlf", "reordered", "all-three", "privacy", "duplicates", "asc-pages"],
)
async def test_csv_rows_equal_truth(
    simulate: Simulate, endpoint: Endpoint, variant: dict[str, Any]
) -> None:
    sim = await simulate(**variant)
    async with client_for(sim) as api:
        items = await rows_of(endpoint, api.stream_blocks(endpoint, START, END, block_bytes=BLOCK))
    assert not [item for item in items if isinstance(item, Rejected)]
    assert_equal_to_truth(sim, endpoint, by_key(endpoint, items))


@pytest.mark.parametrize("endpoint", list(Endpoint))
@pytest.mark.parametrize(("mode", "key_sent"), [("same-host", 1), ("other-host", 0)])
async def test_a_redirected_download_is_followed_and_gets_no_key_elsewhere(
    simulate: Simulate, endpoint: Endpoint, mode: str, key_sent: int
) -> None:
    sim = await simulate(redirect_csv=mode)
    async with client_for(sim) as api:
        items = await rows_of(endpoint, api.stream_blocks(endpoint, START, END, block_bytes=BLOCK))
    assert_equal_to_truth(sim, endpoint, by_key(endpoint, items))
    assert sim.stats.count(endpoint.csv_path, 302) == 1
    assert sim.stats.downloads_with_auth == key_sent, "the key goes to the API's origin only"
    assert not sim.simulator.downloads, "the one-time link was used"


@pytest.mark.parametrize("endpoint", list(Endpoint))
@pytest.mark.parametrize("mode", ["append", "insert"])
async def test_unknown_column_lands_in_extra(
    simulate: Simulate, endpoint: Endpoint, mode: str
) -> None:
    sim = await simulate(extra_column=mode)
    async with client_for(sim) as api:
        items = await rows_of(endpoint, api.stream_blocks(endpoint, START, END, block_bytes=BLOCK))
    got = by_key(endpoint, items)
    for key, row in got.items():
        assert row.pop("extra") == {EXTRA_COLUMN: agent_version(key)}
        for entry in row.get("files", []):
            assert entry.pop("extra") == {"agentTool": AGENT_TOOL}
    assert_equal_to_truth(sim, endpoint, got)


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_malformed_rows_are_rejected_and_the_rest_equal_truth(
    simulate: Simulate, endpoint: Endpoint
) -> None:
    sim = await simulate(malformed_rate=0.05)
    async with client_for(sim) as api:
        items = await rows_of(endpoint, api.stream_blocks(endpoint, START, END, block_bytes=BLOCK))
    rejected = [item for item in items if isinstance(item, Rejected)]
    malformed = sim.dataset.malformed_keys(endpoint, START, END)
    assert len(rejected) == len(malformed) > 0
    assert all(item.reason and item.raw and item.line > 1 for item in rejected)
    assert_equal_to_truth(sim, endpoint, by_key(endpoint, items))


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_json_pages_equal_truth(simulate: Simulate, endpoint: Endpoint) -> None:
    sim = await simulate(rate_limit_requests=100, rate_limit_period=1.0)
    async with client_for(sim) as api:
        items = [row async for row in api.iter_json_rows(endpoint, START, END, page_size=100)]
    assert_equal_to_truth(sim, endpoint, by_key(endpoint, items))


async def test_cut_stream_is_retried_and_ends_equal_to_truth(simulate: Simulate) -> None:
    sim = await simulate(commits=3000)
    sim.faults.cut_next(after_bytes=150_000, times=2)
    async with client_for(sim) as api:
        items = await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END, block_bytes=BLOCK))
    assert sim.stats.streams_cut == 2
    assert not [item for item in items if isinstance(item, Rejected)], "no half row"
    assert len(items) > 3000, "rows before each cut came again"
    assert_equal_to_truth(sim, Endpoint.COMMITS, by_key(Endpoint.COMMITS, items))


async def test_injected_failures_and_429_are_survived(simulate: Simulate) -> None:
    sim = await simulate()
    sim.faults.fail_next(2, status=503)
    sim.faults.throttle_next(1, retry_after=1)
    started = time.monotonic()
    async with client_for(sim) as api:
        blocks = api.stream_blocks(Endpoint.CHANGES, START, END, block_bytes=BLOCK)
        items = await rows_of(Endpoint.CHANGES, blocks)
    assert time.monotonic() - started >= 1.0, "Retry-After honoured"
    assert sim.stats.count(status=503) == 2
    assert sim.stats.rate_limited == 1
    assert_equal_to_truth(sim, Endpoint.CHANGES, by_key(Endpoint.CHANGES, items))


async def test_wrong_key_is_an_auth_error_after_one_request(simulate: Simulate) -> None:
    sim = await simulate()
    async with client_for(sim, key="not-the-key") as api:
        with pytest.raises(AuthError, match="check CURSOR_API_KEY and that the team is on an"):
            await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END, block_bytes=BLOCK))
    assert sim.stats.count(status=401) == 1
    assert sim.stats.count() == 1


class RecordingBudget:
    """The client's own budget, remembering when each request was let through."""

    def __init__(self, settings: Settings) -> None:
        self.inner = RateLimiters.from_settings(settings)
        self.granted: list[float] = []

    async def acquire(self, key: str) -> Grant:
        grant = await self.inner.acquire(key)
        self.granted.append(time.monotonic())
        return grant

    def settle(self, grant: Grant) -> None:
        self.inner.settle(grant)

    def penalize(self, key: str, retry_after: float) -> None:
        self.inner.penalize(key, retry_after)


@pytest.mark.slow
async def test_burst_of_20_stays_within_the_servers_limit(simulate: Simulate) -> None:
    limit, period = 4, 1.0
    sim = await simulate(
        commits=50, changes=50, rate_limit_requests=limit, rate_limit_period=period
    )
    settings = sim_settings(sim)
    budget = RecordingBudget(settings)
    async with CursorClient(settings, budget=budget) as api:
        results = await asyncio.gather(
            *(rows_of(COMMITS, api.stream_blocks(COMMITS, START, END)) for _ in range(20))
        )
    busiest = max(
        sum(1 for other in budget.granted if start <= other < start + period)
        for start in budget.granted
    )
    print(
        f"\nburst: 20 requests, limit {limit}/{period:g}s: at most {busiest} in any window, "
        f"{sim.stats.rate_limited} × 429, span {budget.granted[-1] - budget.granted[0]:.2f}s"
    )
    assert all(len(rows) == len(results[0]) for rows in results)
    assert busiest <= limit
    assert sim.stats.rate_limited == 0
    assert sim.stats.count(status=200) == 20


@pytest.mark.slow
async def test_requests_that_reach_the_server_late_cause_no_429(simulate: Simulate) -> None:
    limit, period = 2, 1.0
    sim = await simulate(commits=50, changes=50, rate_limit_requests=limit,
                         rate_limit_period=period)  # fmt: skip
    sim.faults.delay_next(0.6)  # the first request is counted 0.6 s after it left
    settings = sim_settings(sim, CURSOR_MAX_RETRIES=0)  # a 429 would fail the test loudly
    async with CursorClient(settings) as api:
        results = await asyncio.gather(
            *(rows_of(COMMITS, api.stream_blocks(COMMITS, START, END)) for _ in range(6))
        )
    assert all(len(rows) == len(results[0]) > 0 for rows in results)
    assert sim.stats.rate_limited == 0
