"""Client throughput and memory: stream + parse 100k and 1M commit rows from the simulator.

    .venv/bin/python bench/client_stream.py [--rows 100000 1000000] [--rounds 3]

For each size a simulator runs in its own subprocess (its CSV cache warmed by one untimed
pass, so its rendering speed is not what is measured), and a fresh client subprocess streams
the window as a sync pass does, through `CursorClient.stream_blocks` in blocks of the size a
pass asks for, reads every block the typed way with `parse_block`, and reports rows/s, CPU
seconds and its own peak RSS. A last line cuts and parses the same bytes from memory with
`BlockCutter` and `parse_block` alone (one core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from syncer.client.api import CHUNK_SIZE, CursorClient
from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.parse.blocks import BlockCutter
from syncer.parse.parser import parse_block
from syncer.parse.rows import Rejected

ANCHOR = "2025-08-01T00:00:00Z"
START = datetime(2025, 6, 1, tzinfo=timezone.utc)
END = datetime(2025, 8, 2, tzinfo=timezone.utc)
KEY = "bench-key"
#: The block a sync pass asks for with the default SYNC_BATCH_ROWS (10,000 rows × 256 bytes).
BLOCK_BYTES = 10_000 * 256


@contextmanager
def simulator(commits: int) -> Iterator[str]:
    """A `syncer fake-api` subprocess serving `commits` rows; yields its URL."""
    cache_mb = max(64, commits * 300 // 1_000_000)
    command = [
        sys.executable, "-m", "syncer", "fake-api", "--host", "127.0.0.1", "--port", "0",
        "--api-key", KEY, "--seed", "1", "--commits", str(commits), "--changes", "10",
        "--anchor", ANCHOR, "--days", "30", "--rate-limit-requests", "1000",
        "--rate-limit-period", "1", "--cache-mb", str(cache_mb),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if " on http" not in line:
            raise SystemExit(f"the simulator did not start: {line!r}")
        yield line.split(" on ", 1)[1].split()[0]
    finally:
        process.terminate()
        process.wait(timeout=30)


def settings(url: str) -> Settings:
    return Settings(
        _env_file=None,
        CURSOR_API_KEY=KEY,
        CURSOR_API_BASE_URL=url,
        CURSOR_RATE_LIMIT_REQUESTS=1000,
        CURSOR_RATE_LIMIT_PERIOD_SECONDS=1,
    )


async def stream(url: str) -> tuple[int, int]:
    """Stream the window once; (rows, rejected)."""
    rows = rejected = 0
    async with CursorClient(settings(url)) as api:
        async for block in api.stream_blocks(Endpoint.COMMITS, START, END, block_bytes=BLOCK_BYTES):
            items = parse_block(Endpoint.COMMITS, block)
            rejected += sum(1 for item in items if type(item) is Rejected)
            rows += len(items)
    return rows, rejected


async def download(url: str) -> bytes:
    """The raw CSV body of the window (for the parse-only figure)."""
    parts: list[bytes] = []
    async with CursorClient(settings(url)) as api:
        session = api._require_session()
        params = {"startDate": "2025-06-01T00:00:00.000Z", "endDate": "2025-08-02T00:00:00.000Z"}
        async with session.get(url + Endpoint.COMMITS.csv_path, params=params) as response:
            response.raise_for_status()
            async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                parts.append(chunk)
    return b"".join(parts)


def client(url: str, rounds: int) -> None:
    """The measuring subprocess: a warm-up pass, then timed passes; one JSON line out."""
    asyncio.run(stream(url))  # warms the simulator's cache
    best = None
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        rows, rejected = asyncio.run(stream(url))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best["seconds"]:
            best = {"rows": rows, "rejected": rejected, "seconds": wall, "cpu": cpu}
    assert best is not None
    best["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(best), flush=True)


def parse_only(url: str, rounds: int) -> None:
    """The cutter and the parser alone over bytes in memory, in the client's chunk size."""
    data = asyncio.run(download(url))
    chunks = [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]
    best = 0.0
    for _ in range(rounds):
        cutter = BlockCutter(BLOCK_BYTES)
        started = time.process_time()
        blocks = [block for chunk in chunks for block in cutter.feed(chunk)]
        if (last := cutter.close()) is not None:
            blocks.append(last)
        rows = sum(len(parse_block(Endpoint.COMMITS, block)) for block in blocks)
        best = max(best, rows / (time.process_time() - started))
    print(json.dumps({"rows": rows, "mb": len(data) / 1e6, "rows_per_cpu_s": best}), flush=True)


def measure(mode: str, url: str, rounds: int) -> dict[str, float]:
    command = [sys.executable, __file__, f"--{mode}", url, "--rounds", str(rounds)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", "--sizes", dest="sizes", type=int, nargs="+", default=[100_000, 1_000_000],
        help="commit rows the simulator serves, one run each",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--parse", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client(args.client, args.rounds)
    if args.parse:
        return parse_only(args.parse, args.rounds)
    print(f"{'rows':>10} {'seconds':>8} {'rows/s':>10} {'rows/cpu-s':>11} {'peak RSS':>9}")
    for size in args.sizes:
        with simulator(size) as url:
            result = measure("client", url, args.rounds)
            print(
                f"{result['rows']:>10,.0f} {result['seconds']:>8.2f} "
                f"{result['rows'] / result['seconds']:>10,.0f} "
                f"{result['rows'] / result['cpu']:>11,.0f} {result['peak_rss_mb']:>6.0f} MB"
                + (f"  ({result['rejected']:.0f} rejected)" if result["rejected"] else ""),
                flush=True,
            )
            if size == args.sizes[0]:
                parsed = measure("parse", url, args.rounds)
    print(
        f"cut+parse+convert only (BlockCutter + parse_block, bytes in memory, 1 core): "
        f"{parsed['rows_per_cpu_s']:,.0f} rows/s over {parsed['rows']:,.0f} rows "
        f"({parsed['mb']:.0f} MB)"
    )


if __name__ == "__main__":
    main()
