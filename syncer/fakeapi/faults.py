"""`Faults`: misbehaviour on purpose, set at construction and changed by tests at run time."""

from __future__ import annotations

import time
from dataclasses import dataclass

from syncer.fakeapi.config import FakeApiConfig
from syncer.fakeapi.csvtext import AGENT_TOOL
from syncer.fakeapi.dataset import Dataset
from syncer.fakeapi.render import EXTRA_COLUMN, CsvFormat, agent_version

EXTRA_COLUMN_MODES = (None, "append", "insert")
#: bytes gathered before one chunk of a CSV body is written
CHUNK_BYTES = 256 * 1024
REDIRECT_MODES = (None, "same-host", "other-host")


@dataclass
class Injection:
    """An error response to serve instead of the real one."""

    status: int
    retry_after: int | None = None


class Faults:
    """Every fault knob of a running simulator; tests flip them between requests."""

    def __init__(self, config: FakeApiConfig, dataset: Dataset) -> None:
        self.dataset = dataset
        self.seed = config.seed
        #: every Nth API request fails with `every_status` (0 = never)
        self.fail_every = config.fail_every
        self.every_status = config.fail_status
        self.failures: list[Injection] = []
        #: abort CSV bodies after this many bytes, for the next `cut_times` CSV responses
        self.cut_after_bytes = config.cut_after_bytes
        self.cut_times = config.cut_times
        self.chunk_delay = config.chunk_delay
        #: bytes gathered before a CSV chunk is written (smaller: a slow stream trickles)
        self.chunk_bytes = CHUNK_BYTES
        self.bom = config.bom
        self.crlf = config.crlf
        self.extra_column = config.extra_column
        self.permute_columns = config.permute_columns
        #: CSV endpoints answer 302 to a download URL: None, "same-host" or "other-host"
        self.redirect_csv = config.redirect_csv
        #: the CSV routes are not served: None, "404", "410" or "html"
        self.csv_unavailable = config.csv_unavailable
        if self.redirect_csv not in REDIRECT_MODES:
            raise ValueError(f"redirect_csv must be one of {REDIRECT_MODES}")
        #: seconds each of the next requests spends on the way before the server counts it
        self.arrival_delays: list[float] = []
        #: the next `short_times` CSV responses end cleanly `short_rows` rows short of totalCount
        self.short_rows = 0
        self.short_times = 0
        self.requests = 0

    @property
    def malformed_rate(self) -> float:
        """Fraction of CSV rows rendered unparseable (kept on the data set, for its truth)."""
        return self.dataset.malformed_rate

    @malformed_rate.setter
    def malformed_rate(self, rate: float) -> None:
        self.dataset.malformed_rate = rate

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """The next `count` API requests get `status` with a JSON error."""
        self.failures.extend(Injection(status) for _ in range(count))

    def throttle_next(self, count: int = 1, retry_after: int = 1) -> None:
        """The next `count` API requests get 429 with `Retry-After: retry_after`."""
        self.failures.extend(Injection(429, retry_after) for _ in range(count))

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """The next `count` API requests reach the rate limit `seconds` late (a slow path)."""
        self.arrival_delays.extend(seconds for _ in range(count))

    def arrival_delay(self) -> float:
        """Seconds this request is held before it is counted (0 when none is due)."""
        return self.arrival_delays.pop(0) if self.arrival_delays else 0.0

    def cut_next(self, after_bytes: int, times: int = 1) -> None:
        """Abort the next `times` CSV bodies after `after_bytes` bytes."""
        self.cut_after_bytes, self.cut_times = after_bytes, times

    def shorten_next(self, rows: int, times: int = 1) -> None:
        """The next `times` CSV responses leave out their `rows` oldest rows, ending cleanly."""
        self.short_rows, self.short_times = rows, times

    def shortfall(self) -> int:
        """Rows this CSV response leaves out (0 when none); uses one `short_times`."""
        if self.short_times <= 0:
            return 0
        self.short_times -= 1
        return self.short_rows

    def slow_streams(self, delay: float, chunk_bytes: int = 4096) -> None:
        """CSV bodies trickle: `chunk_bytes` at a time, `delay` seconds apart (0: off)."""
        self.chunk_delay, self.chunk_bytes = delay, chunk_bytes if delay else CHUNK_BYTES

    def skew_clock(self, seconds: float) -> None:
        """The API's clock runs `seconds` ahead of this machine's (negative: behind it).

        It decides which rows exist yet, what `now` and `7d` mean, and the createdAt of rows
        added without one.
        """
        self.dataset.clock = lambda: time.time() + seconds

    def freeze_clock(self) -> None:
        """Stop the API's clock where it is: no new live rows appear from now on."""
        frozen = self.dataset.clock()
        self.dataset.clock = lambda: frozen

    def reset(self) -> None:
        """Back to a well-behaved server (the data set's malformed rate included).

        The clock is left as it is: it is the data, not a fault of the server.
        """
        self.fail_every, self.failures, self.arrival_delays = 0, [], []
        self.cut_after_bytes, self.chunk_delay, self.chunk_bytes = None, 0.0, CHUNK_BYTES
        self.short_rows = self.short_times = 0
        self.bom = self.crlf = self.permute_columns = False
        self.extra_column = self.redirect_csv = self.csv_unavailable = None
        self.dataset.malformed_rate = 0.0

    def injection(self) -> Injection | None:
        """Count an API request and say whether it must fail instead."""
        self.requests += 1
        if self.failures:
            return self.failures.pop(0)
        if self.fail_every and self.requests % self.fail_every == 0:
            return Injection(self.every_status)
        return None

    def cut_point(self) -> int | None:
        """Bytes after which this CSV response is aborted, or None; uses one `cut_times`."""
        if self.cut_after_bytes is None or self.cut_times <= 0:
            return None
        self.cut_times -= 1
        return self.cut_after_bytes

    def unknown_fields(self, key: str) -> dict[str, str]:
        """The unknown column a row carries under `extra_column` ({} when off)."""
        return {} if self.extra_column is None else {EXTRA_COLUMN: agent_version(key)}

    def unknown_file_fields(self) -> dict[str, str]:
        """The unknown key every metadata entry carries under `extra_column` ({} when off)."""
        return {} if self.extra_column is None else {"agentTool": AGENT_TOOL}

    def csv_format(self) -> CsvFormat:
        """The CSV layout currently in force."""
        if self.extra_column not in EXTRA_COLUMN_MODES:
            raise ValueError(f"extra_column must be one of {EXTRA_COLUMN_MODES}")
        return CsvFormat(
            crlf=self.crlf,
            extra_column=self.extra_column,
            permute_seed=self.seed if self.permute_columns else None,
            missing=() if self.dataset.config.commit_source else ("commit_source",),
        )
