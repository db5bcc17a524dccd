"""`make soak`: months unattended, compressed — the daemon for SOAK_MINUTES (default 10) under
random faults drawn from a seed (SOAK_SEED, printed so a failure can be replayed), then checked.

It starts the simulator (in this process, so the driver can change its data and faults), an
embedded PostgreSQL of its own (never a shared server: it is restarted and made read-only), and
`syncer run` as a subprocess with a 2 s interval and a 2 min lookback (and a short rescan, when
this build has one). The driver (soak_driver.py) then changes the data and breaks things at
random moments until the time is up. Then every fault is turned off, the API's clock is stopped
(no new rows), and once the daemon has caught up the checks run (soak_checks.py); the summary
is a table, and the exit code is 1 if any check failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import structlog
from soak_checks import Check, equal_to_truth, quarantined, tracebacks
from soak_driver import Driver
from soak_parts import KEY, Backfills, Daemon, Database, HealthWatch, has_setting

from syncer.fakeapi import FakeApi, FakeApiConfig

LOOKBACK = timedelta(minutes=2)
#: how long the daemon may take, faults off, to make the database equal to the truth
CATCH_UP_SECONDS = 240.0


def _variables(
    api_url: str, database_url: str, start: datetime, rescan: bool, prune: bool
) -> dict[str, str]:
    variables = {
        "CURSOR_API_KEY": KEY,
        "CURSOR_API_BASE_URL": api_url,
        "DATABASE_URL": database_url,
        "SYNC_INTERVAL": "2s",
        "SYNC_LOOKBACK": "2m",
        "SYNC_START": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "SYNC_WINDOW": "1h",  # small spans: a malformed row keeps few from pruning
        "SYNC_HEALTHY_INTERVALS": "3",
        "SYNC_SHUTDOWN_TIMEOUT": "5s",
        "SYNC_BATCH_ROWS": "500",
        "CURSOR_MAX_RETRIES": "3",
        "CURSOR_CONNECT_TIMEOUT": "2s",
        "CURSOR_READ_TIMEOUT": "10s",
        "CURSOR_RATE_LIMIT_REQUESTS": "5",
        "CURSOR_RATE_LIMIT_PERIOD_SECONDS": "2",
    }
    if rescan:
        variables.update(SYNC_RESCAN_INTERVAL="30s", SYNC_RESCAN_SPAN="12h")
    if prune:
        variables["SYNC_PRUNE"] = "true"
    return variables


class Soak:
    """One run: set up, drive, calm down, check."""

    def __init__(self, minutes: float, seed: int, workdir: Path) -> None:
        self.minutes = minutes
        self.seed = seed
        self.workdir = workdir
        self.rescan = has_setting("SYNC_RESCAN_INTERVAL")
        self.prune = self.rescan and has_setting("SYNC_PRUNE")
        self.db = Database(workdir)
        self.sim = FakeApi(
            FakeApiConfig(
                api_key=KEY,
                seed=seed,
                commits=4000,
                changes=4000,
                days=2,
                live_rate=20.0,
                rate_limit_requests=5,
                rate_limit_period=2.0,
            )
        )
        self.checks: list[Check] = []
        #: (daemon start number, when, MB): each process once warm, and the last one at the end
        self.rss: list[tuple[int, str, float]] = []
        self.final_backfill = 0
        self.health_at_end: int | None = None  #: /healthz when the database had caught up

    async def run(self) -> bool:
        await self.db.start()
        await self.sim.start()
        # the first pass reaches back an hour before the oldest row the simulator made
        start = self.sim.dataset.anchor - timedelta(days=self.sim.config.days, hours=1)
        variables = _variables(self.sim.url, self.db.url, start, self.rescan, self.prune)
        self.daemon = Daemon(self.workdir, variables)
        self.backfills = Backfills(self.workdir, variables)
        self.watch = HealthWatch(self.daemon)
        await self.daemon.start()
        began = time.monotonic()
        length = self.minutes * 60
        self.driver = Driver(
            self.seed,
            self.sim,
            self.db,
            self.daemon,
            self.backfills,
            lookback=LOOKBACK,
            kill_until=began + 0.6 * length,
            prune=self.prune,
        )
        stop = asyncio.Event()
        watching = asyncio.create_task(self.watch.run(stop))
        sampling = asyncio.create_task(self._sample_rss(stop, warm=min(120.0, length / 4)))
        try:
            await self.driver.run(began + length)
            calm = await self._calm_down()
            await self._catch_up()
            if self.rescan and not any(self.differences.values()):
                self.driver.settle_late_rows(rescanned=True)  # stored: rescans found them
            self.rss.append((len(self.daemon.logs), "end", self.daemon.rss_mb() or 0.0))
        finally:
            stop.set()
            await asyncio.gather(watching, sampling)
        code = await self.daemon.stop()
        await self._check(calm, code)
        return all(check.ok for check in self.checks)

    async def close(self) -> None:
        await self.daemon.kill()
        if self.backfills.busy() and self.backfills.task is not None:
            self.backfills.task.cancel()
        await self.sim.stop()
        await self.db.stop()

    async def _sample_rss(self, stop: asyncio.Event, warm: float) -> None:
        """The RSS of each daemon process once it is `warm` seconds old."""
        sampled: set[int] = set()
        while not stop.is_set():
            start = len(self.daemon.logs)
            age = time.monotonic() - self.daemon.started_at
            if start not in sampled and age >= warm and (rss := self.daemon.rss_mb()):
                sampled.add(start)
                age_text = f"{int(warm // 60)}:{int(warm % 60):02d} after start {start}"
                self.rss.append((start, age_text, rss))
            await asyncio.sleep(1)

    async def _calm_down(self) -> float:
        """Every fault off, everything up, the API's clock stopped; returns the moment."""
        faults = self.sim.faults
        self.unserved_429 = sum(1 for f in faults.failures if f.status == 429)
        faults.reset()
        faults.freeze_clock()
        await self.sim.start()
        if not self.db.pg.running():
            await self.db.start()
        await self.db.read_only(False)
        if not self.daemon.alive():
            await self.daemon.start()
        await self.backfills.wait()
        calm = time.monotonic()
        self.driver.settle_late_rows(rescanned=False)
        if self.driver.ledger.late_pending and not self.rescan:
            # No rescan in this build: only a backfill reaches rows hours behind the mark.
            self.final_backfill = len(self.driver.ledger.late_pending)
            oldest = min(item[2] for item in self.driver.ledger.late_pending)
            run = self.backfills.launch(oldest - timedelta(minutes=1))
            await self.backfills.wait()
            if run is not None and run.code == 0:
                self.driver.settle_late_rows(rescanned=False)
        return calm

    async def _catch_up(self) -> None:
        """Wait until the database equals the truth and /healthz says 200 (or time is up).

        The status kept is the one seen then: a scheduled rescan may start a moment later and,
        in the soak's compressed time (a 12-hour span read as hourly windows, a 6-second health
        window), hold the endpoint long enough for /healthz to say 503 until it ends.
        """
        deadline = time.monotonic() + CATCH_UP_SECONDS
        conn = await self.db.connect()
        try:
            while time.monotonic() < deadline:
                self.differences = await equal_to_truth(conn, self.sim, self.driver.ledger.history)
                self.health_at_end = self.watch.probes[-1].status if self.watch.probes else None
                if self.health_at_end == 200 and not any(self.differences.values()):
                    break
                await asyncio.sleep(2)
            self.quarantine = await quarantined(conn, self.driver.ledger.malformed)
            self.rows = {
                e.value: await conn.fetchval(f"SELECT count(*) FROM {e.table}")
                for e in self.differences
            }
            self.file_rows = await conn.fetchval("SELECT count(*) FROM ai_code_change_files")
        finally:
            await conn.close()
        self.catch_up = CATCH_UP_SECONDS - (deadline - time.monotonic())

    async def _check(self, calm: float, code: int | None) -> None:
        add = self.checks.append
        ledger = self.driver.ledger
        diffs = "; ".join(f"{e.value}: {d}" for e, d in self.differences.items() if d)
        add(
            Check(
                "database equals the API's truth, row by row",
                diffs
                or f"commits {self.rows['commits']}, changes {self.rows['changes']} "
                f"(+{self.file_rows} file rows), caught up {self.catch_up:.0f} s after the "
                "faults stopped",
                not diffs,
            )
        )
        total, found = self.quarantine
        add(Check("malformed rows in rejected_rows", f"{found} of {total}", found == total))
        injected = ledger.injected_429 - self.unserved_429
        beyond = self.sim.stats.rate_limited - injected
        add(
            Check(
                "429s beyond the injected ones",
                f"{beyond} ({injected} injected, {self.sim.stats.count()} requests)",
                beyond == 0,
            )
        )
        last = self.health_at_end
        add(Check("/healthz at the end (caught up)", str(last), last == 200))
        add(
            Check(
                "longest unhealthy stretch (faults on)",
                f"{self.watch.longest_unhealthy():.1f} s",
                True,
            )
        )
        self._recoveries()
        self._memory()
        backfill_logs = [run.output for run in self.backfills.runs]
        count = tracebacks(self.daemon.log_text(), *backfill_logs)
        add(Check("tracebacks in the logs", str(count), count == 0))
        add(Check("daemon exit code on SIGTERM at the end", str(code), code == 0))
        self._backfills()
        self._late_and_withdrawn()

    def _recoveries(self) -> None:
        """Seconds from each outage's end until both endpoints had a successful pass again."""
        kinds: dict[str, list[float | None]] = {}
        for outage in self.driver.ledger.outages:
            took = self.watch.recovered_after(outage.restored, outage.restored_wall)
            kinds.setdefault(outage.kind, []).append(took)
        for kind, times in sorted(kinds.items()):
            done = [t for t in times if t is not None]
            figure = (
                f"{len(times)}×, recovered in median {statistics.median(done):.1f} s, "
                f"max {max(done):.1f} s"
                if done
                else f"{len(times)}×"
            )
            if len(done) < len(times):
                figure += f", {len(times) - len(done)} never"
            self.checks.append(Check(f"recovery after: {kind}", figure, len(done) == len(times)))

    def _memory(self) -> None:
        if len(self.rss) < 2 or self.rss[-1][1] != "end" or self.rss[-2][0] != self.rss[-1][0]:
            self.checks.append(Check("daemon RSS (last process)", "not measured", False))
            return
        (_, when, warm), (_, _, end) = self.rss[-2], self.rss[-1]
        growth = end - warm
        self.checks.append(
            Check(
                "daemon RSS (last process)",
                f"{warm:.1f} MB ({when}) → {end:.1f} MB at the end ({growth:+.1f} MB)",
                growth < 10,
            )
        )

    def _backfills(self) -> None:
        runs = self.backfills.runs
        failed = [run for run in runs if run.code != 0]
        figure = f"{len(runs)} runs, {len(runs) - len(failed)} completed"
        if failed:
            figure += f", {len(failed)} ended with a one-line error (a fault was on)"
        one_line = all(run.code == 1 and "syncer: error:" in run.output for run in failed)
        self.checks.append(Check("backfills alongside the daemon", figure, one_line))

    def _late_and_withdrawn(self) -> None:
        ledger = self.driver.ledger
        if self.rescan:
            how = "found by the daemon's rescans"
        else:
            how = (
                f"no rescan in this build: backfills found them, a final one {self.final_backfill}"
                if self.final_backfill
                else "no rescan in this build: backfills found them"
            )
        self.checks.append(
            Check(
                "late rows beyond the lookback",
                f"{ledger.late_beyond} ({how})",
                not ledger.late_pending,
            )
        )
        withdrawn = (
            f"{ledger.withdrawn}, pruned by rescans"
            if self.prune
            else "0: this build cannot prune (SYNC_PRUNE), so none were withdrawn"
        )
        self.checks.append(Check("withdrawn rows", withdrawn, True))


def summary(soak: Soak, passed: bool, took: float) -> str:
    lines = ["", "| check | figure | |", "| --- | --- | --- |"]
    lines += [f"| {c.name} | {c.figure} | {'ok' if c.ok else 'FAILED'} |" for c in soak.checks]
    lines += [
        "",
        "what the driver did: "
        + ", ".join(f"{name} {n}" for name, n in sorted(soak.driver.ledger.actions.items())),
    ]
    passes = [e.get("event") for e in soak.daemon.events()]
    lines.append(
        f"daemon: {len(soak.daemon.logs)} starts, {passes.count('pass_done')} passes "
        f"done, {passes.count('pass_failed')} failed; took {took / 60:.1f} min"
    )
    lines.append(f"soak: {'PASSED' if passed else 'FAILED'}")
    return "\n".join(lines)


async def main() -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    minutes = float(os.environ.get("SOAK_MINUTES", "10"))
    seed = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(1, 10**6))
    print(
        f"soak: {minutes:g} minutes, seed {seed} (replay: SOAK_SEED={seed} "
        f"SOAK_MINUTES={minutes:g} make soak)",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="syncer-soak-"))
    soak = Soak(minutes, seed, workdir)
    started = time.monotonic()
    passed = False
    try:
        passed = await soak.run()
    finally:
        await soak.close()
        if hasattr(soak, "driver"):
            print(summary(soak, passed, time.monotonic() - started), flush=True)
        if passed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"soak: logs and data kept in {workdir}", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print(f"soak: started {started_at}", file=sys.stderr, flush=True)
    sys.exit(asyncio.run(main()))
