"""`syncer run` against an API that reads instants at day granularity: new rows still arrive
in the next interval, because the newest window of every pass asks up to the API's own now."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg
import pytest

from syncer.endpoints import Endpoint
from syncer.store.db import to_libpq_url
from tests.daemon.support import eventually, simulator
from tests.truth import assert_equals_truth

pytestmark = pytest.mark.slow


async def first_pass_after(url: str, endpoint: Endpoint, moment: datetime) -> dict[str, Any] | None:
    """The first finished pass of `endpoint` that started after `moment`, or None yet."""
    conn = await asyncpg.connect(to_libpq_url(url))
    try:
        row = await conn.fetchrow(
            "SELECT outcome, rows_inserted, finished_at FROM sync_runs WHERE endpoint = $1 "
            "AND started_at > $2 ORDER BY started_at, id LIMIT 1",
            endpoint.value, moment,
        )  # fmt: skip
    finally:
        await conn.close()
    return dict(row) if row is not None and row["finished_at"] is not None else None


async def test_a_daemon_against_a_day_granular_api_stores_new_rows_in_the_next_interval(
    daemons: Any,
    fresh_db: str,
) -> None:
    async with simulator(day_granularity=True) as sim:
        daemon = await daemons(sim.url, fresh_db, SYNC_WINDOW="1d")
        await daemon.wait_healthy(True)
        for endpoint in Endpoint:
            await assert_equals_truth(fresh_db, sim, endpoint)

        added = datetime.now(timezone.utc)
        sim.dataset.add(Endpoint.COMMITS, commit_hash="e" * 40)
        sim.dataset.add(Endpoint.CHANGES, change_id="arrived-today")
        for endpoint in Endpoint:

            async def next_pass(e: Endpoint = endpoint) -> dict[str, Any] | None:
                return await first_pass_after(fresh_db, e, added)

            found = await eventually(next_pass, 30, "the next pass")
            assert found["outcome"] == "success"
            assert found["rows_inserted"] == 1, "the next pass stores the new row"
        code, _ = await daemon.stop()
        assert code == 0
        for endpoint in Endpoint:
            await assert_equals_truth(fresh_db, sim, endpoint)
