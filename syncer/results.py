"""Plain shared types: what a pass and a batch did, a window, how progress is reported.

A leaf: it imports nothing of the engine, so the daemon's `/healthz` and `/metrics`, the
progress bar and the commands can name these types without importing the sync or the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from syncer.endpoints import Endpoint
from syncer.errors import SyncerError
from syncer.timespec import isoformat_z


class Outcome(str, Enum):
    """How a pass ended, as written to `sync_runs.outcome`."""

    RUNNING = "running"  #: in flight (or the process died: see ABANDONED)
    SUCCESS = "success"  #: every window consumed and committed
    FAILED = "failed"  #: stopped on an error; committed batches stay, the mark did not pass them
    INTERRUPTED = "interrupted"  #: stopped by a signal or shutdown; committed batches stay
    SKIPPED = "skipped"  #: another process held the endpoint's lock
    ABANDONED = "abandoned"  #: found still "running" by a later pass: its process died


@dataclass(slots=True)
class BatchCounts:
    """What one upsert did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deleted: int = 0  #: stored rows pruned because the API no longer serves them

    def add(self, other: BatchCounts) -> None:
        """Accumulate another batch's counts into this one."""
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.deleted += other.deleted

    @property
    def rows(self) -> int:
        """Good rows written or confirmed unchanged."""
        return self.inserted + self.updated + self.unchanged


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open span of `created_at` requested in one call."""

    start: datetime
    end: datetime
    #: the newest window of a pass: its request ends at the API's own `now` (see `request_end`)
    open_end: bool = False

    @property
    def span(self) -> timedelta:
        """The window's length."""
        return self.end - self.start

    @property
    def request_end(self) -> datetime | None:
        """The `endDate` to send: None (the literal `now`) for the newest window of a pass."""
        return None if self.open_end else self.end

    def halves(self) -> tuple[Window, Window]:
        """The window cut in two at its middle (the newer half keeps an open end)."""
        middle = self.start + self.span / 2
        return Window(self.start, middle), Window(middle, self.end, self.open_end)

    def cut(self, size: timedelta) -> list[Window]:
        """The window as consecutive windows of at most `size`, oldest first (the newest keeps
        an open end)."""
        pieces = []
        cursor = self.start
        while cursor < self.end:
            stop = min(cursor + size, self.end)
            pieces.append(Window(cursor, stop))
            cursor = stop
        if pieces and self.open_end:
            pieces[-1] = Window(pieces[-1].start, pieces[-1].end, True)
        return pieces

    def __str__(self) -> str:
        return f"{isoformat_z(self.start)}..{isoformat_z(self.end)}"


@dataclass(slots=True)
class PassResult:
    """What a pass of one endpoint did."""

    endpoint: Endpoint
    run_id: str
    outcome: Outcome
    windows: int = 0
    counts: BatchCounts = field(default_factory=BatchCounts)
    high_water_mark: datetime | None = None
    duration: float = 0.0
    error: SyncerError | None = None
    requests: int = 0  #: API requests the pass made (retries included)
    warnings: list[str] = field(default_factory=list)  #: problems that did not fail it


class Progress(Protocol):
    """Receives progress of a pass (a progress bar, log lines, or metrics)."""

    def planned(self, endpoint: Endpoint, windows: int) -> None:
        """The pass will read this many windows."""

    def batch_written(self, endpoint: Endpoint, counts: BatchCounts) -> None:
        """A batch was committed."""

    def window_done(self, endpoint: Endpoint, window: Window) -> None:
        """A window was fully consumed and its mark committed."""


class NoProgress:
    """Progress that goes nowhere."""

    def planned(self, endpoint: Endpoint, windows: int) -> None:
        """Ignore."""

    def batch_written(self, endpoint: Endpoint, counts: BatchCounts) -> None:
        """Ignore."""

    def window_done(self, endpoint: Endpoint, window: Window) -> None:
        """Ignore."""
