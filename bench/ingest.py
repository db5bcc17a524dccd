"""End-to-end ingest benchmark: simulator on 127.0.0.1 → syncer → PostgreSQL, with yardsticks.

    make bench                                   # 1M commits, 500k changes, 3 rounds
    .venv/bin/python bench/ingest.py --rows 100000 --rounds 1   # a quick smoke run

Every figure is printed with the yardstick it is held to, measured in the same round on the
same server (see bench/yardsticks.py), and the ratio; the summary takes medians of the
rounds' figures and of their ratios. Per round, in one fresh database:

- commits: `\\copy` into a keyed table and into a same-schema table, then `syncer backfill`
  (first load) and again (unchanged reload, rows rewritten counted by PostgreSQL);
- changes: the pure-SQL load and the keyed `\\copy`, then `syncer backfill` first load and
  unchanged reload (change rows and file rows rewritten counted);
then, in a second fresh database and a simulator a tenth of the size with live rows: a first
load (peak RSS at the smaller size) and, after a pause, `syncer sync` — the incremental pass,
whose engine time (the pass minus waiting for the API) is reported — and then the daemon
(`syncer run`) with the same pause as its interval: the median engine time of its passes on
warm connections (all but each endpoint's first).
Each syncer load prints where its time went (bench/traced.py). Needs `psql`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import yardsticks
from harness import (
    Run,
    count,
    download_csv,
    fresh_database,
    load_average,
    run_daemon,
    run_syncer,
    simulator,
    writes,
)
from report import print_report

Figures = dict[str, float]
STAGES: tuple[str, ...] = ("http_cut", "copy_stage", "lookup", "typing", "upsert", "files")
STAGES += ("commit",)
STAGES += ("indexes", "other", "pass")
BACKFILL = ("backfill", "--since", "31d", "--endpoint")
#: live rows a minute in the small simulator, and the pause before the incremental pass
LIVE_RATE, PAUSE_S = 1200, 15
#: the daemon's interval (its passes read as many new rows as `syncer sync` after the pause),
#: and how long it runs: a first pass on cold connections, then warm ones
DAEMON_INTERVAL_S, DAEMON_S = PAUSE_S, 4 * PAUSE_S + 5


def _record(out: Figures, name: str, run: Run, endpoint: str) -> None:
    out[f"{name}_rate"] = run.rate
    out[f"{name}_rows"] = run.rows
    out[f"{name}_rss_mb"] = run.peak_rss_mb
    out[f"{name}_cpu_s"] = run.cpu_s
    out[f"{name}_wall_s"] = run.seconds
    for stage in STAGES:
        out[f"{name}_{stage}"] = run.stages.get(endpoint, {}).get(stage, 0.0)


def big_round(server: str, sim: str, workdir: Path) -> Figures:
    """The 1M-row measurements (commits, then changes) in one fresh database."""
    out: Figures = {}
    commits_csv, changes_csv = workdir / "commits.csv", workdir / "changes.csv"
    commits_header = download_csv(sim, "commits", commits_csv)
    changes_header = download_csv(sim, "changes", changes_csv)
    with fresh_database(server) as db:
        out["y_commits_keyed"] = yardsticks.commits_copy(
            db, commits_csv, commits_header, same_schema=False
        )
        out["y_commits_same"] = yardsticks.commits_copy(
            db, commits_csv, commits_header, same_schema=True
        )
        _record(out, "c_first", run_syncer(sim, db, *BACKFILL, "commits"), "commits")
        before = writes(db, "ai_commits")
        again = run_syncer(sim, db, *BACKFILL, "commits")
        _record(out, "c_reload", again, "commits")
        time.sleep(0.7)  # the statistics collector reports every 500 ms
        out["c_reload_rewritten"] = again.inserted + again.updated
        out["c_reload_rewritten"] += writes(db, "ai_commits") - before
        before = writes(db, "ai_commits")
        out["y_commits_reload"] = yardsticks.reload_sql(db, "commits", commits_csv, commits_header)
        time.sleep(0.7)
        out["y_commits_reload_rewritten"] = writes(db, "ai_commits") - before

        out["y_changes_sql"], out["y_files"] = yardsticks.changes_sql(
            db, changes_csv, changes_header
        )
        out["y_changes_keyed"] = yardsticks.changes_copy(db, changes_csv, changes_header)
        _record(out, "h_first", run_syncer(sim, db, *BACKFILL, "changes"), "changes")
        out["h_files"] = count(db, "ai_code_change_files")
        before_changes = writes(db, "ai_code_changes")
        before_files = writes(db, "ai_code_change_files")
        again = run_syncer(sim, db, *BACKFILL, "changes")
        _record(out, "h_reload", again, "changes")
        time.sleep(0.7)
        out["h_reload_rewritten"] = again.inserted + again.updated
        out["h_reload_rewritten"] += writes(db, "ai_code_changes") - before_changes
        out["h_reload_files_rewritten"] = writes(db, "ai_code_change_files") - before_files
        before_changes = writes(db, "ai_code_changes")
        out["y_changes_reload"] = yardsticks.reload_sql(db, "changes", changes_csv, changes_header)
        time.sleep(0.7)
        out["y_changes_reload_rewritten"] = writes(db, "ai_code_changes") - before_changes
    return out


def small_round(server: str, commits: int, changes: int) -> Figures:
    """A first load at a tenth of the size (peak RSS), then an incremental pass."""
    out: Figures = {}
    live = ("--live-rate", str(LIVE_RATE))
    with simulator(commits, changes, 512, *live) as sim, fresh_database(server) as db:
        started = time.monotonic()
        _record(out, "s_commits", run_syncer(sim, db, *BACKFILL, "commits"), "commits")
        _record(out, "s_changes", run_syncer(sim, db, *BACKFILL, "changes"), "changes")
        time.sleep(max(0.0, PAUSE_S - (time.monotonic() - started)))
        inc = run_syncer(sim, db, "sync")
        out["inc_new"] = inc.inserted
        out["inc_rows"] = inc.rows
        for endpoint in ("commits", "changes"):
            stages = inc.stages.get(endpoint, {})
            engine = stages.get("pass", 0.0) - stages.get("http_cut", 0.0)
            out[f"inc_{endpoint}_engine_ms"] = engine * 1000
        daemon = run_daemon(sim, db, DAEMON_S, DAEMON_INTERVAL_S)["passes"]
        for endpoint in ("commits", "changes"):
            warm = [wall - api for wall, api in daemon.get(endpoint, [])[1:]]
            out[f"daemon_{endpoint}_engine_ms"] = statistics.median(warm) * 1000
            out["daemon_passes"] = len(warm)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="commit rows (changes: half as many)")
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
    if args.rows:
        args.commits, args.changes = args.rows, args.rows // 2
    rounds: list[Figures] = []
    loads: list[str] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        simulator(args.commits, args.changes, cache_mb=2048) as big,
    ):
        for n in range(args.rounds):
            loads.append(load_average())
            result = big_round(args.database_url, big, Path(tmp))
            result |= small_round(args.database_url, args.commits // 10, args.changes // 10)
            rounds.append(result)
            print(f"round {n + 1} (load average {loads[-1]}):", flush=True)
            print_report([result], indent="    ")
    print(
        f"\nmedians of {len(rounds)} round(s): {args.commits:,} commits, "
        f"{args.changes:,} changes; load average at each round's start: {' | '.join(loads)}"
    )
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print_report(rounds)


if __name__ == "__main__":
    main()
