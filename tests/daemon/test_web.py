"""/healthz tells whether every endpoint synced recently; /metrics exposes what the daemon did."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncer.daemon.metrics import Metrics, endpoint_label
from syncer.daemon.web import Health, build_app, serve
from syncer.endpoints import Endpoint
from syncer.errors import ApiUnreachable, RateLimited
from syncer.results import BatchCounts, Outcome, PassResult

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
MAX_AGE = timedelta(minutes=15)


class Clock:
    """A settable clock for Health."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def result(endpoint: Endpoint, outcome: Outcome, **kw: object) -> PassResult:
    return PassResult(endpoint, "run0", outcome, **kw)  # type: ignore[arg-type]


def succeed_all(health: Health, mark: datetime = T0) -> None:
    for endpoint in Endpoint:
        health.finished(result(endpoint, Outcome.SUCCESS, high_water_mark=mark))


def test_unhealthy_until_every_endpoint_has_succeeded() -> None:
    health = Health(MAX_AGE, clock=Clock())
    assert health.report()[0] is False
    health.finished(result(Endpoint.COMMITS, Outcome.SUCCESS))
    healthy, body = health.report()
    assert not healthy
    assert body["endpoints"]["commits"]["healthy"]
    assert not body["endpoints"]["changes"]["healthy"]
    health.finished(result(Endpoint.CHANGES, Outcome.SUCCESS))
    assert health.report()[0] is True


def test_one_failed_pass_does_not_flip_health_but_an_outage_does() -> None:
    clock = Clock()
    health = Health(MAX_AGE, clock=clock)
    succeed_all(health)
    clock.now += timedelta(minutes=5)
    health.finished(result(Endpoint.CHANGES, Outcome.FAILED, error=ApiUnreachable("down")))
    healthy, body = health.report()
    assert healthy
    changes = body["endpoints"]["changes"]
    assert changes["last_outcome"] == "failed"
    assert changes["last_error"] == "down"
    assert changes["consecutive_failures"] == 1

    clock.now = T0 + MAX_AGE
    healthy, body = health.report()
    assert not healthy
    assert body["status"] == "unhealthy"
    assert not body["endpoints"]["changes"]["healthy"]

    health.finished(result(Endpoint.CHANGES, Outcome.SUCCESS))
    health.finished(result(Endpoint.COMMITS, Outcome.SUCCESS))
    healthy, body = health.report()
    assert healthy
    assert body["endpoints"]["changes"]["consecutive_failures"] == 0
    assert body["endpoints"]["changes"]["last_error"] is None


def test_a_skipped_pass_changes_nothing() -> None:
    health = Health(MAX_AGE, clock=Clock())
    succeed_all(health)
    before = health.report()
    health.finished(result(Endpoint.COMMITS, Outcome.SKIPPED))
    assert health.report() == before


def test_the_body_reports_mark_lag_and_last_outcome() -> None:
    clock = Clock()
    health = Health(MAX_AGE, clock=clock)
    health.started(Endpoint.COMMITS)
    assert health.report()[1]["endpoints"]["commits"]["running"] is True
    succeed_all(health, mark=T0 - timedelta(seconds=90))
    clock.now += timedelta(seconds=10)
    _, body = health.report()
    commits = body["endpoints"]["commits"]
    assert commits == {
        "healthy": True,
        "high_water_mark": "2026-03-01T11:58:30.000Z",
        "lag_seconds": 100.0,
        "last_outcome": "success",
        "last_finished_at": "2026-03-01T12:00:00.000Z",
        "last_success_at": "2026-03-01T12:00:00.000Z",
        "last_error": None,
        "consecutive_failures": 0,
        "running": False,
    }
    assert body["max_age_seconds"] == 900


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/analytics/ai-code/commits.csv", "commits"),
        ("/analytics/ai-code/commits", "commits"),
        ("/analytics/ai-code/changes.csv", "changes"),
        ("/analytics/ai-code/changes", "changes"),
        ("/elsewhere", "/elsewhere"),
    ],
)
def test_metrics_label_requests_by_endpoint(path: str, label: str) -> None:
    assert endpoint_label(path) == label


def samples(
    metrics: Metrics, now: datetime | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render(now).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_requests_waits_rows_and_passes() -> None:
    metrics = Metrics()
    csv = Endpoint.COMMITS.csv_path
    for status in (200, 200, 429, "error"):
        metrics.on_request(csv, status)
    metrics.on_rate_limited(csv)
    metrics.on_wait(csv, 1.5)
    metrics.on_retry(csv, RateLimited("429", retry_after=2))
    metrics.batch_written(Endpoint.COMMITS, BatchCounts(inserted=7, updated=2, unchanged=1))
    metrics.batch_written(Endpoint.COMMITS, BatchCounts(inserted=3, rejected=1))
    finished = T0 + timedelta(seconds=5)
    metrics.pass_finished(
        result(Endpoint.COMMITS, Outcome.SUCCESS, duration=3.0, high_water_mark=T0), finished
    )

    got = samples(metrics, now=T0 + timedelta(seconds=60))

    def value(name: str, **labels: str) -> float:
        return got[name, frozenset(labels.items())]

    assert value("syncer_api_requests_total", endpoint="commits", status="200") == 2
    assert value("syncer_api_requests_total", endpoint="commits", status="429") == 1
    assert value("syncer_api_requests_total", endpoint="commits", status="error") == 1
    assert value("syncer_api_rate_limited_total", endpoint="commits") == 1
    assert value("syncer_api_rate_limited_total", endpoint="changes") == 0
    assert value("syncer_api_retries_total", endpoint="commits", error="RateLimited") == 1
    assert value("syncer_rate_limit_wait_seconds_total", endpoint="commits") == 1.5
    assert value("syncer_rows_total", endpoint="commits", result="inserted") == 10
    assert value("syncer_rows_total", endpoint="commits", result="updated") == 2
    assert value("syncer_rows_total", endpoint="commits", result="unchanged") == 1
    assert value("syncer_rows_total", endpoint="commits", result="rejected") == 1
    assert value("syncer_passes_total", endpoint="commits", outcome="success") == 1
    assert value("syncer_pass_duration_seconds_count", endpoint="commits", outcome="success") == 1
    assert value("syncer_pass_duration_seconds_sum", endpoint="commits", outcome="success") == 3
    assert value("syncer_last_success_timestamp_seconds", endpoint="commits") == (
        finished.timestamp()
    )
    assert value("syncer_high_water_mark_timestamp_seconds", endpoint="commits") == T0.timestamp()
    assert value("syncer_high_water_mark_lag_seconds", endpoint="commits") == 60


def test_each_daemon_owns_its_registry() -> None:
    one, two = Metrics(), Metrics()
    one.on_rate_limited(Endpoint.CHANGES.csv_path)
    key = ("syncer_api_rate_limited_total", frozenset({("endpoint", "changes")}))
    assert samples(one)[key] == 1
    assert samples(two)[key] == 0


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Health, Metrics]]:
    health, metrics = Health(MAX_AGE), Metrics()
    async with serve(build_app(health, metrics), "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}", health, metrics


async def test_healthz_answers_503_then_200_with_json(
    served: tuple[str, Health, Metrics],
) -> None:
    url, health, _ = served
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 503
            assert resp.content_type == "application/json"
            assert (await resp.json())["status"] == "unhealthy"
        succeed_all(health, mark=datetime.now(timezone.utc))
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["status"] == "ok"
    assert set(body["endpoints"]) == {"commits", "changes"}


async def test_metrics_are_served_in_prometheus_text(
    served: tuple[str, Health, Metrics],
) -> None:
    url, _, metrics = served
    metrics.on_request(Endpoint.CHANGES.csv_path, 200)
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert 'syncer_api_requests_total{endpoint="changes",status="200"} 1.0' in text
    assert "# TYPE syncer_pass_duration_seconds histogram" in text
