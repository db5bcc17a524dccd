"""The soak in two minutes: `bench/soak.py` runs the daemon under seeded random faults, and the
database it leaves equals the truth, with every other check of its summary passing too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"
#: the checks every run reports (recoveries and counts vary with what the seed drew)
CHECKS = {
    "database equals the API's truth, row by row",
    "malformed rows in rejected_rows",
    "429s beyond the injected ones",
    "/healthz at the end (caught up)",
    "longest unhealthy stretch (faults on)",
    "daemon RSS (last process)",
    "tracebacks in the logs",
    "daemon exit code on SIGTERM at the end",
    "backfills alongside the daemon",
    "late rows beyond the lookback",
    "withdrawn rows",
}


@pytest.mark.timeout(900)
def test_a_two_minute_soak_passes_every_check(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOAK_")}
    done = subprocess.run(
        [sys.executable, str(SOAK)],
        env={**env, "SOAK_MINUTES": "2", "SOAK_SEED": "11"},
        cwd=tmp_path, capture_output=True, text=True, timeout=840, check=False,
    )  # fmt: skip
    out = done.stdout
    print(out)
    assert done.returncode == 0, out + done.stderr
    assert "soak: 2 minutes, seed 11 (replay: SOAK_SEED=11 SOAK_MINUTES=2 make soak)" in out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ")][2:]
    assert CHECKS <= {row[0].removeprefix("| ") for row in rows}
    assert all(row[-1] == "ok |" for row in rows), out
    assert out.rstrip().endswith("soak: PASSED")
