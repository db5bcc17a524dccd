"""Progress of long passes: a rich progress bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import sys
from time import monotonic
from types import TracebackType

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from syncer.endpoints import Endpoint
from syncer.results import BatchCounts, Window

log = structlog.get_logger(__name__)


class ConsoleProgress:
    """Windows done/total, rows, rate and ETA per endpoint; use as a context manager."""

    def __init__(self, *, interactive: bool | None = None, log_every: float = 10.0) -> None:
        self._interactive = sys.stderr.isatty() if interactive is None else interactive
        self._log_every = log_every
        self._rows: dict[Endpoint, int] = {}
        self._done: dict[Endpoint, int] = {}
        self._total: dict[Endpoint, int] = {}
        self._started: dict[Endpoint, float] = {}
        self._last_log = monotonic()
        self._bar: Progress | None = None
        self._tasks: dict[Endpoint, TaskID] = {}

    def __enter__(self) -> ConsoleProgress:
        if self._interactive:
            self._bar = Progress(
                TextColumn("[bold]{task.description:<8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("windows  {task.fields[rows]:>10,} rows  {task.fields[rate]:>8,.0f}/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def planned(self, endpoint: Endpoint, windows: int) -> None:
        """An endpoint's pass starts with this many windows."""
        self._total[endpoint] = windows
        self._done[endpoint] = 0
        self._rows[endpoint] = 0
        self._started[endpoint] = monotonic()
        if self._bar is not None:
            self._tasks[endpoint] = self._bar.add_task(
                endpoint.value, total=windows, rows=0, rate=0.0
            )

    def batch_written(self, endpoint: Endpoint, counts: BatchCounts) -> None:
        """Count the batch's rows and refresh the display."""
        self._rows[endpoint] = self._rows.get(endpoint, 0) + counts.rows + counts.rejected
        self._refresh(endpoint)

    def window_done(self, endpoint: Endpoint, window: Window) -> None:
        """Advance the window counter."""
        self._done[endpoint] = self._done.get(endpoint, 0) + 1
        self._refresh(endpoint, force_log=True)

    def _rate(self, endpoint: Endpoint) -> float:
        elapsed = monotonic() - self._started.get(endpoint, monotonic())
        return self._rows.get(endpoint, 0) / elapsed if elapsed > 0 else 0.0

    def _refresh(self, endpoint: Endpoint, *, force_log: bool = False) -> None:
        rate = self._rate(endpoint)
        if self._bar is not None and endpoint in self._tasks:
            self._bar.update(
                self._tasks[endpoint],
                completed=self._done.get(endpoint, 0),
                rows=self._rows.get(endpoint, 0),
                rate=rate,
            )
            return
        if force_log or monotonic() - self._last_log >= self._log_every:
            self._last_log = monotonic()
            done, total = self._done.get(endpoint, 0), self._total.get(endpoint, 0)
            eta = None
            if done and total > done:
                elapsed = monotonic() - self._started[endpoint]
                eta = round(elapsed / done * (total - done))
            log.info(
                "progress",
                endpoint=endpoint.value,
                windows=f"{done}/{total}",
                rows=self._rows.get(endpoint, 0),
                rows_per_s=round(rate),
                eta_s=eta,
            )
