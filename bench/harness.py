"""The benchmark's fixtures: simulators, throw-away databases, psql, and timed syncer runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY = "bench-key"
TRACED = Path(__file__).with_name("traced.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def simulator(commits: int, changes: int, cache_mb: int, *extra: str) -> Iterator[str]:
    """A `syncer fake-api` subprocess with an unthrottled rate limit; yields its URL."""
    port = free_port()
    args = ["--port", str(port), "--api-key", KEY, "--commits", str(commits)]
    args += ["--changes", str(changes), "--days", "30", "--seed", "42"]
    args += ["--rate-limit-requests", "100000", "--rate-limit-period", "1"]
    args += ["--cache-mb", str(cache_mb), *extra]
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncer", "fake-api", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def psql(url: str, *args: str) -> str:
    """Run psql quietly (unaligned, tuples only); its output, stripped."""
    return subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-qtAX", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def timed_psql(url: str, script: str) -> float:
    """Seconds psql takes to run `script` (a CHECKPOINT first, so none lands in the timing)."""
    psql(url, "-c", "CHECKPOINT")
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as f:
        f.write(script)
        f.flush()
        started = time.perf_counter()
        psql(url, "-f", f.name)
        return time.perf_counter() - started


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new, migrated database on `server`, dropped afterwards; yields its URL."""
    name = f"syncer_bench_{uuid.uuid4().hex[:8]}"
    psql(server, "-c", f"CREATE DATABASE {name}")
    url = server.rsplit("/", 1)[0] + f"/{name}"
    try:
        subprocess.run(
            [sys.executable, "-m", "syncer", "migrate"],
            check=True,
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
        )
        yield url
    finally:
        psql(server, "-c", f"DROP DATABASE {name} WITH (FORCE)")


def download_csv(sim: str, endpoint: str, target: Path) -> str:
    """Fetch the endpoint's whole CSV (this also warms the simulator's cache); its header."""
    request = urllib.request.Request(
        f"{sim}/analytics/ai-code/{endpoint}.csv?startDate=30d&endDate=now",
        headers={"Authorization": "Basic " + b64encode(f"{KEY}:".encode()).decode()},
    )
    with urllib.request.urlopen(request) as response, target.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    with target.open(encoding="utf-8") as f:
        return f.readline().strip()


def count(db: str, table: str) -> int:
    return int(psql(db, "-c", f"SELECT count(*) FROM {table}"))


def writes(db: str, table: str) -> int:
    """Tuples inserted, updated or deleted in `table` so far (the statistics collector's)."""
    return int(
        psql(
            db,
            "-c",
            "SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables "
            f"WHERE relname = '{table}'",
        )
        or 0
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Run:
    """What one syncer command did, from its run log and its stage timers."""

    rows: int = 0
    seconds: float = 0.0  #: the run log's finished_at - started_at, summed over endpoints
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    #: per endpoint: stage → seconds (see traced.py)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def _env(sim: str, db: str) -> dict[str, str]:
    return {
        **os.environ,
        "CURSOR_API_KEY": KEY,
        "CURSOR_API_BASE_URL": sim,
        "DATABASE_URL": db,
        "CURSOR_RATE_LIMIT_REQUESTS": "100000",
        "CURSOR_RATE_LIMIT_PERIOD_SECONDS": "1",
        "SYNC_LOG_FORMAT": "json",
        "SYNC_WINDOW": "30d",
    }


def run_daemon(sim: str, db: str, seconds: float, interval_s: int) -> dict[str, Any]:
    """Run `syncer run` under the stage timers for `seconds`, then stop it (SIGTERM); what
    traced.py recorded (`passes`: each pass's wall time and API wait, per endpoint)."""
    env = _env(sim, db) | {
        "SYNC_INTERVAL": f"{interval_s}s",
        "SYNC_HTTP_PORT": str(free_port()),
        "SYNC_HTTP_HOST": "127.0.0.1",
        "SYNC_RESCAN_INTERVAL": "0",
    }
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        proc = subprocess.Popen(
            [sys.executable, str(TRACED), out.name, "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        time.sleep(seconds)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise SystemExit(f"syncer run failed: {err.decode()[-2000:]}")
        traced: dict[str, Any] = json.loads(Path(out.name).read_text())
    return traced


def run_syncer(sim: str, db: str, *command: str) -> Run:
    """Run a syncer command under the stage timers (bench/traced.py) in a subprocess."""
    env = _env(sim, db)
    psql(db, "-c", "CHECKPOINT")
    last_id = psql(db, "-c", "SELECT coalesce(max(id), 0) FROM sync_runs")
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        proc = subprocess.run(
            [sys.executable, str(TRACED), out.name, *command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"syncer {' '.join(command)} failed: {proc.stderr.decode()[-2000:]}")
        traced = json.loads(Path(out.name).read_text())
    run = Run(peak_rss_mb=traced["peak_rss_mb"], cpu_s=traced["cpu_s"], stages=traced["stages"])
    logged = psql(
        db,
        "-c",
        "SELECT extract(epoch FROM finished_at - started_at), rows_inserted, rows_updated, "
        f"rows_unchanged, outcome FROM sync_runs WHERE id > {last_id}",
    )
    for line in logged.splitlines():
        seconds, inserted, updated, unchanged, outcome = line.split("|")
        if outcome != "success":
            raise SystemExit(f"syncer {' '.join(command)}: {outcome}")
        run.seconds += float(seconds)
        run.inserted += int(inserted)
        run.updated += int(updated)
        run.unchanged += int(unchanged)
    run.rows = run.inserted + run.updated + run.unchanged
    return run
