"""End-to-end ingest benchmark: simulator on 127.0.0.1 → `syncer backfill` → PostgreSQL.

One command (`make bench`, or `python bench/ingest.py`) prints, per round and as medians:
- `psql \\copy` of the same commits CSV into an empty table with the primary key (the yardstick);
- `syncer backfill` of 1M commits, first load, and the same data again (all unchanged), with the
  ratio to `\\copy` and the rows the reload rewrote (must be 0);
- `syncer backfill` of 500k changes with their file rows;
- the syncer process's peak RSS at 100k and at 1M commit rows.
Needs a PostgreSQL server (BENCH_DATABASE_URL, default the local one) and `psql`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

KEY = "bench-key"
COMMIT_COLUMNS = (
    "commit_hash,user_id,user_email,repo_name,branch_name,is_primary_branch,total_lines_added,"
    "total_lines_deleted,tab_lines_added,tab_lines_deleted,composer_lines_added,"
    "composer_lines_deleted,non_ai_lines_added,non_ai_lines_deleted,message,commit_ts,created_at,"
    "commit_source"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def simulator(commits: int, changes: int, cache_mb: int) -> Iterator[str]:
    """A `syncer fake-api` subprocess with an unthrottled rate limit; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncer",
            "fake-api",
            "--port",
            str(port),
            "--api-key",
            KEY,
            "--commits",
            str(commits),
            "--changes",
            str(changes),
            "--days",
            "30",
            "--seed",
            "42",
            "--rate-limit-requests",
            "100000",
            "--rate-limit-period",
            "1",
            "--cache-mb",
            str(cache_mb),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def psql(url: str, *args: str) -> str:
    return subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-qtAX", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    name = f"syncer_bench_{uuid.uuid4().hex[:8]}"
    psql(server, "-c", f"CREATE DATABASE {name}")
    url = server.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        psql(server, "-c", f"DROP DATABASE {name} WITH (FORCE)")


def download_csv(sim: str, path: str, target: Path) -> int:
    """Fetch the whole CSV (this also warms the simulator's cache); returns data rows."""
    request = urllib.request.Request(
        f"{sim}{path}?startDate=60d&endDate=now",
        headers={"Authorization": "Basic " + b64encode(f"{KEY}:".encode()).decode()},
    )
    with urllib.request.urlopen(request) as response, target.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    with target.open("rb") as f:
        return sum(1 for _ in f)  # upper bound: quoted newlines inflate it; not used as a rate


def copy_baseline(db: str, csv_file: Path, rows: int, *, all_indexes: bool) -> float:
    """Rows/s of `psql \\copy` into an empty table with the primary key (or with all of
    ai_commits' indexes: the key plus the four that BI queries use)."""
    like = "INCLUDING ALL" if all_indexes else "INCLUDING DEFAULTS, PRIMARY KEY (commit_hash)"
    psql(db, "-c", f"CREATE TABLE copy_target (LIKE ai_commits {like})")
    started = time.perf_counter()
    psql(db, "-c", f"\\copy copy_target({COMMIT_COLUMNS}) FROM '{csv_file}' CSV HEADER")
    elapsed = time.perf_counter() - started
    counted = int(psql(db, "-c", "SELECT count(*) FROM copy_target"))
    assert counted == rows, (counted, rows)
    psql(db, "-c", "DROP TABLE copy_target")
    return rows / elapsed


@dataclass
class Load:
    rows: int
    seconds: float
    peak_rss_mb: float
    inserted: int
    updated: int
    unchanged: int

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def backfill(sim: str, db: str, endpoint: str) -> Load:
    """Run `syncer backfill` in a subprocess; time it from the run log, sample its RSS."""
    env = {
        **os.environ,
        "CURSOR_API_KEY": KEY,
        "CURSOR_API_BASE_URL": sim,
        "DATABASE_URL": db,
        "CURSOR_RATE_LIMIT_REQUESTS": "100000",
        "CURSOR_RATE_LIMIT_PERIOD_SECONDS": "1",
        "SYNC_LOG_FORMAT": "json",
        "SYNC_WINDOW": "90d",
    }
    proc = psutil.Popen(
        [sys.executable, "-m", "syncer", "backfill", "--since", "60d", "--endpoint", endpoint],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    if proc.returncode != 0:
        raise SystemExit(f"backfill failed: {proc.stderr.read().decode()[-2000:]}")
    row = psql(
        db,
        "-c",
        "SELECT extract(epoch FROM finished_at - started_at), rows_inserted, "
        "rows_updated, rows_unchanged FROM sync_runs WHERE endpoint = "
        f"'{endpoint}' ORDER BY id DESC LIMIT 1",
    ).split("|")
    seconds, inserted, updated, unchanged = float(row[0]), int(row[1]), int(row[2]), int(row[3])
    return Load(inserted + updated + unchanged, seconds, peak / 2**20, inserted, updated, unchanged)


def rewritten(db: str, table: str) -> int:
    return int(
        psql(
            db,
            "-c",
            f"SELECT n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relname = '{table}'",
        )
        or 0
    )


def migrate(db: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "syncer", "migrate"],
        check=True,
        env={**os.environ, "DATABASE_URL": db},
        capture_output=True,
    )


def one_round(server: str, big: str, small: str, commits: int, workdir: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    with fresh_database(server) as db:
        migrate(db)
        csv_file = workdir / "commits.csv"
        download_csv(big, "/analytics/ai-code/commits.csv", csv_file)
        download_csv(big, "/analytics/ai-code/changes.csv", workdir / "changes.csv")
        out["copy_rows_s"] = copy_baseline(db, csv_file, commits, all_indexes=False)
        out["copy_all_idx_rows_s"] = copy_baseline(db, csv_file, commits, all_indexes=True)
        first = backfill(big, db, "commits")
        out["first_rows_s"], out["rss_1m_mb"] = first.rate, first.peak_rss_mb
        time.sleep(1)  # let the statistics collector catch up
        before = rewritten(db, "ai_commits")
        again = backfill(big, db, "commits")
        time.sleep(1)
        out["reload_rows_s"] = again.rate
        out["reload_rewritten"] = again.updated + (rewritten(db, "ai_commits") - before)
        out["reload_unchanged"] = again.unchanged
        changes = backfill(big, db, "changes")
        out["changes_rows_s"] = changes.rate
        out["changes_rss_mb"] = changes.peak_rss_mb
        out["change_files"] = int(psql(db, "-c", "SELECT count(*) FROM ai_code_change_files"))
    with fresh_database(server) as db:
        migrate(db)
        out["rss_100k_mb"] = backfill(small, db, "commits").peak_rss_mb
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    rounds = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        simulator(args.commits, args.changes, cache_mb=2048) as big,
        simulator(args.commits // 10, 10, cache_mb=512) as small,
    ):
        for n in range(args.rounds):
            result = one_round(args.database_url, big, small, args.commits, Path(tmp))
            rounds.append(result)
            print(
                f"round {n + 1}: " + ", ".join(f"{k}={v:,.1f}" for k, v in result.items()),
                flush=True,
            )
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(
        f"\nmedians of {len(rounds)} round(s); {args.commits:,} commits, {args.changes:,} changes"
    )
    print(f"  psql \\copy into a keyed table     {med['copy_rows_s']:>10,.0f} rows/s")
    print(
        f"  psql \\copy, key + 4 BI indexes   {med['copy_all_idx_rows_s']:>10,.0f} rows/s "
        "(the indexes ai_commits keeps)"
    )
    print(
        f"  backfill commits, first load      {med['first_rows_s']:>10,.0f} rows/s  "
        f"{med['first_rows_s'] / med['copy_rows_s']:.2f}x copy (target >= 0.6), "
        f"{med['first_rows_s'] / med['copy_all_idx_rows_s']:.2f}x copy with the same indexes"
    )
    print(
        f"  backfill commits, unchanged       {med['reload_rows_s']:>10,.0f} rows/s  "
        f"{med['reload_rows_s'] / med['copy_rows_s']:.2f}x copy (target >= 0.6), "
        f"rows rewritten {med['reload_rewritten']:.0f} (target 0)"
    )
    print(
        f"  backfill changes (+{med['change_files']:,.0f} files) {med['changes_rows_s']:>10,.0f} "
        "change rows/s (target >= 50,000)"
    )
    print(
        f"  peak RSS: 100k commits {med['rss_100k_mb']:.0f} MB, 1M commits "
        f"{med['rss_1m_mb']:.0f} MB, changes {med['changes_rss_mb']:.0f} MB (target < 200 MB)"
    )


if __name__ == "__main__":
    main()
