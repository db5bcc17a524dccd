"""`syncer run`'s scheduled rescans, as a real subprocess: rows that arrive behind the lookback,
which the incremental passes never see, land with the next rescan and are counted as drift."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest

from syncer.endpoints import Endpoint
from syncer.fakeapi.drift import add_late
from syncer.store.db import to_libpq_url
from tests.daemon.support import Daemon, eventually, simulator
from tests.truth import assert_equals_truth, stored

#: the daemon tests' fixtures: a factory of `syncer run` processes, an unmigrated database

pytestmark = pytest.mark.slow


async def test_a_rescan_picks_up_rows_added_three_hours_behind_the_mark(
    daemons: Callable[..., Awaitable[Daemon]], fresh_db: str
) -> None:
    async with simulator() as sim:
        daemon = await daemons(sim.url, fresh_db, SYNC_RESCAN_INTERVAL="3s", SYNC_RESCAN_SPAN="1d")

        async def first_passes() -> bool:
            return min((await daemon.passes()).values()) >= 1

        await eventually(first_passes, 30, f"a pass per endpoint\n{daemon.log_text()}")
        late = add_late(sim.dataset, Endpoint.COMMITS, 3, behind=timedelta(hours=3))
        late_keys = {row["commit_hash"] for row in late}

        async def drift_counted() -> bool:
            inserted = await daemon.metric(
                "syncer_rescan_rows_total", endpoint="commits", result="inserted"
            )
            return inserted >= 3

        await eventually(drift_counted, 30, f"a rescan's drift\n{daemon.log_text()}")
        assert late_keys <= set(await stored(fresh_db, Endpoint.COMMITS))
        text = await daemon.metrics_text()
        code, _ = await daemon.stop()
        assert code == 0
        for endpoint in Endpoint:
            await assert_equals_truth(fresh_db, sim, endpoint)

    assert 'syncer_rescan_rows_total{endpoint="commits",result="inserted"} 3.0' in text
    assert 'syncer_rescan_rows_total{endpoint="changes",result="deleted"} 0.0' in text
    conn = await asyncpg.connect(to_libpq_url(fresh_db))
    try:
        rows = await conn.fetch(
            "SELECT command, sum(rows_inserted) AS inserted FROM sync_runs "
            "WHERE endpoint = 'commits' AND outcome = 'success' GROUP BY command"
        )
    finally:
        await conn.close()
    inserted = {r["command"]: r["inserted"] for r in rows}
    assert inserted["rescan"] == 3, "only a rescan found them: the passes read the lookback"
    assert inserted["run"] == 300
    drift = daemon.events("rescan_drift")
    assert drift
    assert drift[0]["inserted"] == 3
