"""`Metrics`: the daemon's Prometheus registry, fed by the API client, passes and scheduler."""

from __future__ import annotations

from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from syncer.endpoints import Endpoint
from syncer.errors import ApiError
from syncer.results import BatchCounts, Outcome, PassResult, Window

#: Pass durations span a quiet 1-second incremental pass to a first 30-day load.
_DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))
_ROW_RESULTS = ("inserted", "updated", "unchanged", "rejected")
_ENDPOINTS = frozenset(endpoint.value for endpoint in Endpoint)
_DRIFT_RESULTS = ("inserted", "updated", "deleted")


def endpoint_label(path: str) -> str:
    """`commits` / `changes` for their API paths (CSV or JSON); any other path as it is."""
    for endpoint in Endpoint:
        if path in (endpoint.csv_path, endpoint.json_path):
            return endpoint.value
    return path


class Metrics:
    """Counters, histograms and gauges of one daemon, in a registry of its own.

    It is the API client's `ApiObserver` (requests, 429s, retries, rate-limit waits) and
    every pass's `Progress` (rows); the scheduler reports finished passes to it.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "syncer_api_requests",
            "HTTP requests to the Cursor API, by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.rate_limited = Counter(
            "syncer_api_rate_limited",
            "429 responses from the Cursor API",
            ["endpoint"],
            registry=r,
        )
        self.retries = Counter(
            "syncer_api_retries",
            "Retried API requests, by endpoint and error",
            ["endpoint", "error"],
            registry=r,
        )
        self.rate_limit_wait = Counter(
            "syncer_rate_limit_wait_seconds",
            "Seconds spent waiting for the rate budget before requests",
            ["endpoint"],
            registry=r,
        )
        self.rows = Counter(
            "syncer_rows",
            "Rows written, by endpoint and result "
            "(inserted, updated, unchanged, rejected into quarantine)",
            ["endpoint", "result"],
            registry=r,
        )
        self.passes = Counter(
            "syncer_passes",
            "Finished passes, by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.pass_duration = Histogram(
            "syncer_pass_duration_seconds",
            "Wall time of a pass, by endpoint and outcome",
            ["endpoint", "outcome"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.high_water_mark = Gauge(
            "syncer_high_water_mark_timestamp_seconds",
            "The stored high-water mark (newest created_at fully synced), Unix time",
            ["endpoint"],
            registry=r,
        )
        self.lag = Gauge(
            "syncer_high_water_mark_lag_seconds",
            "Seconds between now and the high-water mark",
            ["endpoint"],
            registry=r,
        )
        self.last_success = Gauge(
            "syncer_last_success_timestamp_seconds",
            "When the last successful pass finished, Unix time",
            ["endpoint"],
            registry=r,
        )
        self.form_requests = Counter(
            "syncer_api_form_requests",
            "HTTP requests to the Cursor API, by endpoint and the form that served it (csv, json)",
            ["endpoint", "form"],
            registry=r,
        )
        self.form = Gauge(
            "syncer_api_form",
            "1 for the form (csv, json) each endpoint's latest request was read through, else 0",
            ["endpoint", "form"],
            registry=r,
        )
        self.rescan_rows = Counter(
            "syncer_rescan_rows",
            "Rows a rescan found the incremental passes had missed, by endpoint and result "
            "(inserted, updated, deleted): drift worth an alert",
            ["endpoint", "result"],
            registry=r,
        )
        self.rescans = Counter(
            "syncer_rescans",
            "Finished rescans, by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=r,
        )
        self._marks: dict[str, datetime] = {}
        for endpoint in Endpoint:
            name = endpoint.value
            self.rate_limited.labels(name)
            self.rate_limit_wait.labels(name)
            for result in _ROW_RESULTS:
                self.rows.labels(name, result)
            for result in _DRIFT_RESULTS:
                self.rescan_rows.labels(name, result)

    # -- ApiObserver -----------------------------------------------------------------------

    def on_request(self, path: str, status: int | str) -> None:
        """A response arrived (its HTTP status), or "error" when none did."""
        name, form = endpoint_label(path), "csv" if path.endswith(".csv") else "json"
        self.requests.labels(name, str(status)).inc()
        if name in _ENDPOINTS:
            self.form_requests.labels(name, form).inc()
            self.form.labels(name, form).set(1)
            self.form.labels(name, "json" if form == "csv" else "csv").set(0)

    def on_rate_limited(self, path: str) -> None:
        """The API answered 429."""
        self.rate_limited.labels(endpoint_label(path)).inc()

    def on_wait(self, path: str, seconds: float) -> None:
        """A request waited this long for the rate budget."""
        self.rate_limit_wait.labels(endpoint_label(path)).inc(max(0.0, seconds))

    def on_retry(self, path: str, error: ApiError) -> None:
        """A request is about to be retried after `error`."""
        self.retries.labels(endpoint_label(path), type(error).__name__).inc()

    # -- Progress --------------------------------------------------------------------------

    def planned(self, endpoint: Endpoint, windows: int) -> None:
        """Nothing to count."""

    def batch_written(self, endpoint: Endpoint, counts: BatchCounts) -> None:
        """Count the rows of a committed batch."""
        for result in _ROW_RESULTS:
            if value := getattr(counts, result):
                self.rows.labels(endpoint.value, result).inc(value)

    def window_done(self, endpoint: Endpoint, window: Window) -> None:
        """Nothing to count."""

    # -- the scheduler -----------------------------------------------------------------------

    def pass_finished(self, result: PassResult, finished_at: datetime) -> None:
        """Record a pass's outcome, duration, and (on success) its time and mark."""
        name, outcome = result.endpoint.value, result.outcome.value
        self.passes.labels(name, outcome).inc()
        self.pass_duration.labels(name, outcome).observe(result.duration)
        if result.outcome is Outcome.SUCCESS:
            self.last_success.labels(name).set(finished_at.timestamp())
        if result.high_water_mark is not None:
            self.mark_known(result.endpoint, result.high_water_mark)

    def rescan_finished(self, result: PassResult) -> None:
        """Count a rescan and the drift it found (a failed one's committed rows count too)."""
        name = result.endpoint.value
        self.rescans.labels(name, result.outcome.value).inc()
        for kind in _DRIFT_RESULTS:
            if value := getattr(result.counts, kind):
                self.rescan_rows.labels(name, kind).inc(value)
        if result.high_water_mark is not None:
            self.mark_known(result.endpoint, result.high_water_mark)

    def mark_known(self, endpoint: Endpoint, mark: datetime) -> None:
        """The endpoint's high-water mark is `mark`."""
        self._marks[endpoint.value] = mark
        self.high_water_mark.labels(endpoint.value).set(mark.timestamp())

    def render(self, now: datetime | None = None) -> bytes:
        """The registry in Prometheus text format, lag computed as of `now`."""
        now = now or datetime.now(timezone.utc)
        for name, mark in self._marks.items():
            self.lag.labels(name).set(max(0.0, (now - mark).total_seconds()))
        return generate_latest(self.registry)
