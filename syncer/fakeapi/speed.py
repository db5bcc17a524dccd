"""`python -m syncer.fakeapi.speed [ROWS]`: how fast the simulator renders CSV, without HTTP."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

from syncer.endpoints import Endpoint
from syncer.fakeapi.config import FakeApiConfig
from syncer.fakeapi.dataset import Dataset
from syncer.fakeapi.render import CsvFormat, CsvRenderer

ANCHOR = datetime(2025, 7, 31, tzinfo=timezone.utc)


def measure(endpoint: Endpoint, rows: int) -> tuple[float, float, int]:
    """Render and UTF-8 encode every row of a fresh data set.

    Returns rows per wall-clock second, rows per CPU second (steadier on a shared
    machine), and the bytes rendered.
    """
    dataset = Dataset(FakeApiConfig(commits=rows, changes=rows, days=30, seed=1, anchor=ANCHOR))
    started, cpu = time.perf_counter(), time.process_time()
    pieces = dataset.pieces(endpoint, datetime(2000, 1, 1, tzinfo=timezone.utc), ANCHOR)
    size = sum(len(text.encode()) for text in CsvRenderer(dataset, endpoint, CsvFormat())
               .render(pieces))  # fmt: skip
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return rows / wall, rows / cpu, size


def main(argv: list[str]) -> None:
    """Print rows/s and MB for each endpoint."""
    rows = int(argv[0]) if argv else 1_000_000
    for endpoint in Endpoint:
        wall, cpu, size = measure(endpoint, rows)
        print(f"{endpoint.value}: {rows:,} rows, {size / 1e6:.0f} MB, {wall:,.0f} rows/s "
              f"({cpu:,.0f} rows per CPU second)")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
