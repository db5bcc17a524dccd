"""The JSON fallback's speed: simulator → `syncer sync` with CURSOR_API_FORMAT=json → PostgreSQL.

Prints rows per second and requests per 10,000 rows for each endpoint. The simulator runs in
this process (its rendering shares the CPU with the client, so the rate is a floor), with a
rate limit high enough not to be the bottleneck: at the API's real 5 (or 20) requests per
minute, the rate limit and not this figure bounds the JSON path (see the README).
Needs a PostgreSQL server (BENCH_DATABASE_URL, default the local one).

    python bench/json_pages.py [--rows 50000] [--page-size 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import asyncpg

from syncer.commands import backfill_command
from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi, FakeApiConfig
from syncer.store.db import create_engine, migrate, to_libpq_url


async def bench(rows: int, page_size: int, server: str) -> None:
    name = f"syncer_bench_json_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = server.rsplit("/", 1)[0] + "/" + name
    try:
        engine = create_engine(url)
        await migrate(engine)
        await engine.dispose()
        config = FakeApiConfig(commits=rows, changes=rows, days=25, seed=1,
                               rate_limit_requests=100_000, rate_limit_period=1.0)  # fmt: skip
        async with FakeApi(config) as sim:
            for endpoint in Endpoint:
                settings = Settings(
                    _env_file=None, CURSOR_API_KEY=config.api_key, CURSOR_API_BASE_URL=sim.url,
                    DATABASE_URL=url, CURSOR_API_FORMAT="json", CURSOR_JSON_PAGE_SIZE=page_size,
                    CURSOR_RATE_LIMIT_REQUESTS=100_000, CURSOR_RATE_LIMIT_PERIOD_SECONDS=1,
                    SYNC_START="30d", SYNC_LOG_FORMAT="json", SYNC_LOG_LEVEL="WARNING",
                )  # fmt: skip
                sim.stats.reset()
                started = time.perf_counter()
                await backfill_command(settings, "30d", "now", endpoint)
                took = time.perf_counter() - started
                requests = sim.stats.count(endpoint.json_path)
                print(
                    f"{endpoint.value:8} {rows:,} rows in {took:.1f}s: {rows / took:,.0f} rows/s, "
                    f"{requests} requests ({requests * 10_000 / rows:.1f} per 10k rows, "
                    f"pageSize {page_size})"
                )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows per endpoint")
    parser.add_argument("--page-size", type=int, default=1000, help="CURSOR_JSON_PAGE_SIZE")
    args = parser.parse_args()
    server = to_libpq_url(
        os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    asyncio.run(bench(args.rows, args.page_size, server))


if __name__ == "__main__":
    main()
