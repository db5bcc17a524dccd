"""Our clock minutes ahead of or behind the API's changes nothing in what is stored: the newest
window of a pass ends at the API's own `now`, so the rows it has just made are read at once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from syncer.commands import sync_command
from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi
from syncer.fakeapi.timestamps import from_ms
from tests.support import settings_for, sim_config
from tests.truth import assert_equals_truth


@pytest.mark.parametrize("minutes", [10, -10], ids=["api-ahead", "api-behind"])
async def test_a_clock_apart_from_the_apis_changes_nothing_stored(
    clean_db: str, minutes: int
) -> None:
    async with FakeApi(sim_config(days=5)) as sim:
        sim.faults.skew_clock(minutes * 60)
        settings = settings_for(sim, clean_db, SYNC_START="7d", SYNC_LOOKBACK="15m")
        assert await sync_command(settings) == 0
        for endpoint in Endpoint:
            await assert_equals_truth(clean_db, sim, endpoint)

        api_now = from_ms(sim.dataset.now_ms())
        for endpoint in Endpoint:
            sim.dataset.add(endpoint)  # made at the API's now
            sim.dataset.add(endpoint, created_at=api_now - timedelta(minutes=5))  # late
        stored_key = sim.dataset.truth(Endpoint.COMMITS, api_now - timedelta(days=1), api_now)
        sim.dataset.update(Endpoint.COMMITS, stored_key[-1]["commit_hash"], created_at=api_now)

        assert await sync_command(settings) == 0  # one pass, right after: nothing waits
        for endpoint in Endpoint:
            await assert_equals_truth(clean_db, sim, endpoint)
