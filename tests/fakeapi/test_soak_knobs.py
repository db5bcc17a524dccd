"""The simulator knobs a long mixed run needs: malformed rows added at any moment, slow streams
of small responses, and an API clock ahead of or behind ours."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from syncer.endpoints import Endpoint
from syncer.fakeapi import Dataset, FakeApi, Faults
from syncer.fakeapi.dataset import MALFORMED_KINDS
from syncer.timespec import isoformat_z
from tests.fakeapi.support import EVER, FAR, auth, config, get_csv, parse_csv, unparseable


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=auth()) as session:
        yield session


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_rows_added_malformed_are_served_broken_known_and_not_in_truth(
    http: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    async with FakeApi(config()) as api:
        kinds = [k for k in MALFORMED_KINDS if endpoint is Endpoint.CHANGES or k != "metadata"]
        broken = {api.dataset.add_malformed(endpoint, kind) for kind in kinds}
        sound = api.dataset.add(endpoint)[endpoint.key]
        good, bad = unparseable(endpoint, await get_csv(http, api, endpoint))

        assert bad == broken == api.dataset.malformed_keys(endpoint, EVER, FAR)
        truth = {row[endpoint.key] for row in api.dataset.truth(endpoint, EVER, FAR)}
        assert sound in truth
        assert not broken & truth
        assert {row[endpoint.key] for row in good} == truth


def test_a_malformed_kind_must_exist_for_the_endpoint() -> None:
    data = Dataset(config())
    with pytest.raises(ValueError, match="no malformed kind 'metadata' for commits"):
        data.add_malformed(Endpoint.COMMITS, "metadata")


async def test_slow_streams_trickle_even_a_small_response(http: aiohttp.ClientSession) -> None:
    async with FakeApi(config()) as api:  # 400 commits: ~150 KiB, one chunk normally
        api.faults.slow_streams(0.05, chunk_bytes=16 * 1024)
        started = time.monotonic()
        body = await get_csv(http, api, Endpoint.COMMITS)
        assert time.monotonic() - started >= 0.2  # several chunks, each 50 ms apart
        assert len(parse_csv(Endpoint.COMMITS, body)) == 400
        api.faults.reset()
        assert (api.faults.chunk_delay, api.faults.chunk_bytes) == (0.0, 256 * 1024)


@pytest.mark.parametrize("offset", [600.0, -600.0], ids=["api-ahead", "api-behind"])
async def test_a_skewed_clock_moves_the_apis_now(
    http: aiohttp.ClientSession, offset: float
) -> None:
    async with FakeApi(config()) as api:
        api.faults.skew_clock(offset)
        row = api.dataset.add(Endpoint.COMMITS)
        ours = datetime.now(timezone.utc)
        assert abs((row["created_at"] - ours).total_seconds() - offset) < 60

        def window(end: str) -> dict[str, str]:
            return {"startDate": isoformat_z(ours - timedelta(hours=1)), "endDate": end}

        at_api_now = await get_csv(http, api, Endpoint.COMMITS, **window("now"))
        at_our_now = await get_csv(http, api, Endpoint.COMMITS, **window(isoformat_z(ours)))
        key = row["commit_hash"]
        assert key in {r["commit_hash"] for r in parse_csv(Endpoint.COMMITS, at_api_now)}
        seen_at_our_now = key in {r["commit_hash"] for r in parse_csv(Endpoint.COMMITS, at_our_now)}
        assert seen_at_our_now is (offset < 0)  # ahead: our "now" is in the API's past


def test_a_frozen_clock_stops_live_rows() -> None:
    cfg = config(live_rate=600.0, anchor=None, days=1)
    data = Dataset(cfg)
    Faults(cfg, data).freeze_clock()
    before = len(data.truth(Endpoint.CHANGES, EVER, FAR))
    time.sleep(0.3)  # ~3 live rows would appear on a running clock
    assert len(data.truth(Endpoint.CHANGES, EVER, FAR)) == before
