"""The soak's driver: from a seeded generator, at random moments, it changes the API's data (new,
late, updated, amended, fewer-file, malformed and withdrawn rows) and breaks things (5xx and 429
bursts, cut and slow streams, the API or PostgreSQL down, a read-only database, a SIGKILLed
daemon, a backfill alongside). Two loops, data and faults, each with its own generator."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from soak_parts import Backfills, Daemon, Database

from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi
from syncer.fakeapi.dataset import MALFORMED_KINDS
from syncer.fakeapi.timestamps import from_ms

T = TypeVar("T")
_HOUR = timedelta(hours=1)


@dataclass
class Outage:
    """A fault that took something away, and when it was given back (for recovery times)."""

    kind: str
    began: float  # monotonic
    restored: float = 0.0
    restored_wall: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    seconds: float = 0.0


@dataclass
class Ledger:
    """What the driver did, for the checks and the summary."""

    actions: Counter[str] = field(default_factory=Counter)
    malformed: dict[Endpoint, set[str]] = field(
        default_factory=lambda: {e: set() for e in Endpoint}
    )
    #: late rows beyond the lookback not yet covered by a rescan or a successful backfill
    late_pending: list[tuple[Endpoint, str, datetime, float]] = field(default_factory=list)
    late_beyond: int = 0
    withdrawn: int = 0
    injected_429: int = 0
    outages: list[Outage] = field(default_factory=list)
    #: what happened to each row the driver touched, in order (to explain a difference)
    history: dict[str, list[str]] = field(default_factory=dict)

    def note(self, key: str, what: str, created_at: datetime | None = None) -> None:
        when = f" createdAt {created_at.isoformat()}" if created_at else ""
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
        self.history.setdefault(key, []).append(f"{stamp} {what}{when}")


def _deck(rng: random.Random, cards: list[T], deadline: float) -> Iterator[T]:
    """The cards in a fresh shuffled order, round after round, until `deadline`: every kind
    comes up once a round, so even a short run sees each of them."""
    while True:
        for card in rng.sample(cards, len(cards)):
            if time.monotonic() >= deadline:
                return
            yield card


class Driver:
    """Mutates the simulator and breaks things until `deadline` (monotonic)."""

    def __init__(
        self,
        seed: int,
        sim: FakeApi,
        db: Database,
        daemon: Daemon,
        backfills: Backfills,
        *,
        lookback: timedelta,
        kill_until: float,
        prune: bool,
    ) -> None:
        self.data_rng = random.Random(seed)
        self.fault_rng = random.Random(seed + 1)
        self.sim = sim
        self.db = db
        self.daemon = daemon
        self.backfills = backfills
        self.lookback = lookback
        self.kill_until = kill_until
        self.prune = prune
        self.ledger = Ledger()

    # --- loops ---------------------------------------------------------------------------

    async def run(self, deadline: float) -> None:
        await asyncio.gather(self._data_loop(deadline), self._fault_loop(deadline))

    async def _data_loop(self, deadline: float) -> None:
        actions: list[Callable[[Endpoint], None]] = [
            self.new_rows, self.new_rows, self.late_inside, self.late_beyond,
            self.update_in_place, self.amend, self.fewer_files, self.malformed,
        ]  # fmt: skip
        if self.prune:
            actions.append(self.withdraw)
        rng = self.data_rng
        for action in _deck(rng, actions, deadline):
            await asyncio.sleep(rng.uniform(0.3, 2.5))
            action(rng.choice(list(Endpoint)))

    async def _fault_loop(self, deadline: float) -> None:
        faults: list[Callable[[], Awaitable[None]]] = [
            self.burst_5xx, self.burst_429, self.burst_429_bare, self.cut_streams,
            self.slow_streams, self.api_down, self.postgres_restart, self.read_only,
            self.sigkill, self.backfill,
        ]  # fmt: skip
        rng = self.fault_rng
        await asyncio.sleep(rng.uniform(3, 6))  # a first load in peace
        for fault in _deck(rng, faults, deadline):
            await fault()
            await asyncio.sleep(rng.uniform(1.5, 5))

    # --- data ----------------------------------------------------------------------------

    def _now(self) -> datetime:
        return from_ms(self.sim.dataset.now_ms())

    def _recent(self, endpoint: Endpoint, span: timedelta) -> list[dict[str, Any]]:
        now = self._now()
        return self.sim.dataset.truth(endpoint, now - span, now)

    def new_rows(self, endpoint: Endpoint) -> None:
        for _ in range(self.data_rng.randint(1, 8)):
            row = self.sim.dataset.add(endpoint)
            self.ledger.note(row[endpoint.key], "added", row["created_at"])
        self.ledger.actions["new rows"] += 1

    def late_inside(self, endpoint: Endpoint) -> None:
        """A row whose createdAt is already inside the lookback: the next pass reads it."""
        behind = self.lookback * self.data_rng.uniform(0.1, 0.5)
        row = self.sim.dataset.add(endpoint, created_at=self._now() - behind)
        self.ledger.note(row[endpoint.key], "added late (inside)", row["created_at"])
        self.ledger.actions["late row inside the lookback"] += 1

    def late_beyond(self, endpoint: Endpoint) -> None:
        """A row hours behind: only a rescan (or a backfill over it) can find it."""
        behind = self.lookback + timedelta(minutes=self.data_rng.uniform(1, 180))
        created = self._now() - behind
        row = self.sim.dataset.add(endpoint, created_at=created)
        self.ledger.late_pending.append((endpoint, row[endpoint.key], created, time.monotonic()))
        self.ledger.late_beyond += 1
        self.ledger.note(row[endpoint.key], "added late (beyond)", created)
        self.ledger.actions["late row beyond the lookback"] += 1

    def update_in_place(self, endpoint: Endpoint) -> None:
        """New values, same createdAt, inside the lookback (the API corrects a row)."""
        rows = [
            r
            for r in self._recent(endpoint, self.lookback / 2)
            if r[endpoint.key] not in self.ledger.malformed[endpoint]
        ]
        if not rows:
            return
        row = self.data_rng.choice(rows)
        lines = self.data_rng.randint(0, 500)
        self.sim.dataset.update(endpoint, row[endpoint.key], total_lines_added=lines)
        self.ledger.note(row[endpoint.key], "updated in place", row["created_at"])
        self.ledger.actions[f"{endpoint.value} updated in place"] += 1

    def amend(self, endpoint: Endpoint) -> None:
        """A commit served again with a newer createdAt and new values (amended)."""
        rows = self._recent(Endpoint.COMMITS, timedelta(hours=6))
        if not rows:
            return
        row = self.data_rng.choice(rows)
        self.sim.dataset.update(
            Endpoint.COMMITS,
            row["commit_hash"],
            created_at=self._now(),
            message=f"amended {self.data_rng.randint(0, 10**6)}",
            tab_lines_added=self.data_rng.randint(0, 50),
        )
        self.ledger.note(row["commit_hash"], "amended", row["created_at"])
        self.ledger.actions["commit amended (newer createdAt)"] += 1

    def fewer_files(self, endpoint: Endpoint) -> None:
        """A change re-served with fewer file entries: no stale file row may remain."""
        rows = [
            r
            for r in self._recent(Endpoint.CHANGES, self.lookback / 2)
            if len(r.get("files") or []) >= 2
        ]
        if not rows:
            return
        row = self.data_rng.choice(rows)
        keep = self.data_rng.randint(0, len(row["files"]) - 1)
        self.sim.dataset.update(Endpoint.CHANGES, row["change_id"], files=row["files"][:keep])
        self.ledger.note(row["change_id"], f"re-served with {keep} files", row["created_at"])
        self.ledger.actions["change re-served with fewer files"] += 1

    def malformed(self, endpoint: Endpoint) -> None:
        kinds = [k for k in MALFORMED_KINDS if endpoint is Endpoint.CHANGES or k != "metadata"]
        key = self.sim.dataset.add_malformed(endpoint, self.data_rng.choice(kinds))
        self.ledger.malformed[endpoint].add(key)
        self.ledger.actions["malformed row"] += 1

    def withdraw(self, endpoint: Endpoint) -> None:
        """The API stops serving a row (pruned on the next rescan).

        Only rows from 1 to 10 hours before the run: pruning skips a span that holds a record
        it could not read (its key unknown, it might be the withdrawn row's new form), and the
        malformed rows all sit in the run's own hours. With 1-hour windows, older spans are clean.
        """
        anchor = self.sim.dataset.anchor
        rows = self.sim.dataset.truth(endpoint, anchor - timedelta(hours=10), anchor - _HOUR)
        if rows:
            row = self.data_rng.choice(rows)
            self.sim.dataset.remove(endpoint, row[endpoint.key])
            self.ledger.note(row[endpoint.key], "withdrawn", row["created_at"])
            self.ledger.withdrawn += 1
            self.ledger.actions["row withdrawn"] += 1

    # --- faults --------------------------------------------------------------------------

    async def burst_5xx(self) -> None:
        status = self.fault_rng.choice([500, 502, 503, 504])
        self.sim.faults.fail_next(self.fault_rng.randint(1, 5), status=status)
        self.ledger.actions["5xx burst"] += 1

    async def burst_429(self) -> None:
        count = self.fault_rng.randint(1, 4)
        self.sim.faults.throttle_next(count, retry_after=self.fault_rng.randint(1, 3))
        self.ledger.injected_429 += count
        self.ledger.actions["429 burst with Retry-After"] += 1

    async def burst_429_bare(self) -> None:
        count = self.fault_rng.randint(1, 4)
        self.sim.faults.fail_next(count, status=429)
        self.ledger.injected_429 += count
        self.ledger.actions["429 burst without Retry-After"] += 1

    async def cut_streams(self) -> None:
        self.sim.faults.cut_next(self.fault_rng.randint(200, 4000), self.fault_rng.randint(1, 3))
        self.ledger.actions["streams cut"] += 1

    async def slow_streams(self) -> None:
        delay = self.fault_rng.uniform(0.05, 0.4)
        self.sim.faults.slow_streams(delay, chunk_bytes=self.fault_rng.choice([256, 1024, 4096]))
        await asyncio.sleep(self.fault_rng.uniform(3, 10))
        self.sim.faults.slow_streams(0)
        self.ledger.actions["slow streams"] += 1

    async def _outage(
        self,
        kind: str,
        take: Callable[[], Awaitable[None]],
        give: Callable[[], Awaitable[None]],
        seconds: float,
    ) -> None:
        outage = Outage(kind, time.monotonic())
        await take()
        await asyncio.sleep(seconds)
        await give()
        outage.restored, outage.restored_wall = time.monotonic(), datetime.now(timezone.utc)
        outage.seconds = outage.restored - outage.began
        self.ledger.outages.append(outage)
        self.ledger.actions[kind] += 1

    async def api_down(self) -> None:
        seconds = self.fault_rng.uniform(2, 12)
        await self._outage("API down", self.sim.stop, self.sim.start, seconds)

    async def postgres_restart(self) -> None:
        seconds = self.fault_rng.uniform(0.5, 6)
        await self._outage("PostgreSQL restart", self.db.stop, self.db.start, seconds)

    async def read_only(self) -> None:
        async def on() -> None:
            await self.db.read_only(True)

        async def off() -> None:
            await self.db.read_only(False)

        await self._outage("database read-only", on, off, self.fault_rng.uniform(4, 15))

    async def sigkill(self) -> None:
        if time.monotonic() >= self.kill_until:  # the last daemon lives on: its RSS is measured
            return
        seconds = self.fault_rng.uniform(0.2, 3)
        await self._outage("daemon SIGKILLed", self.daemon.kill, self.daemon.start, seconds)

    async def backfill(self) -> None:
        """`syncer backfill` over the last hours, beside the daemon (sharing the budget)."""
        since = self._now() - self.lookback - timedelta(hours=4)
        if self.backfills.launch(since) is not None:
            self.ledger.actions["backfill alongside"] += 1

    def settle_late_rows(self, rescanned: bool) -> None:
        """Late rows a successful backfill (started after them, reaching back to them) or a
        completed rescan covered are no longer pending."""
        if rescanned:
            self.ledger.late_pending.clear()
            return
        covered = [(r.since, r.started) for r in self.backfills.runs if r.code == 0]
        self.ledger.late_pending = [
            item
            for item in self.ledger.late_pending
            if not any(since <= item[2] and started > item[3] for since, started in covered)
        ]
