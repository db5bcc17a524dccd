"""The run log counts the API requests each pass made, retries included, as the API saw them."""

from __future__ import annotations

from syncer.commands import sync_command
from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi
from tests.support import last_runs, settings_for, sim_config


async def test_each_pass_records_the_requests_it_made(clean_db: str) -> None:
    async with FakeApi(sim_config(fail_every=3, fail_status=503)) as sim:
        settings = settings_for(sim, clean_db, SYNC_WINDOW="5d")
        retried = 0
        for _ in range(2):
            sim.stats.reset()
            assert await sync_command(settings) == 0
            runs = {r["endpoint"]: r for r in (await last_runs(clean_db))[-2:]}
            for endpoint in Endpoint:
                served = sim.stats.count(endpoint.csv_path) + sim.stats.count(endpoint.json_path)
                assert served > 0
                assert runs[endpoint.value]["requests"] == served
                retried += served - runs[endpoint.value]["windows"]
        assert retried > 0, "the failed requests that were retried are counted too"
