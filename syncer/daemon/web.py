"""The daemon's HTTP side: `GET /healthz` (JSON, 200 or 503) and `GET /metrics` (Prometheus).

Health rule: an endpoint is healthy when its last *successful* pass finished less than
`SYNC_HEALTHY_INTERVALS` × `SYNC_INTERVAL` ago. One failed pass (an API blip) does not flip
it; an outage longer than that does, and the next success flips it back. The high-water mark
is reported but is not the test: a team that commits nothing over a weekend is not unhealthy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from syncer.daemon.metrics import Metrics
from syncer.endpoints import Endpoint
from syncer.results import Outcome, PassResult
from syncer.timespec import isoformat_z

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return isoformat_z(value) if value else None


@dataclass(slots=True)
class EndpointHealth:
    """What the daemon knows about one endpoint's recent passes."""

    high_water_mark: datetime | None = None
    last_outcome: Outcome | None = None
    last_finished: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    running: bool = False


class Health:
    """Per-endpoint pass history and the verdict of /healthz."""

    def __init__(self, max_age: timedelta, *, clock: Clock = _utcnow) -> None:
        self.max_age = max_age
        self._clock = clock
        self.endpoints = {endpoint: EndpointHealth() for endpoint in Endpoint}

    def mark_known(self, endpoint: Endpoint, mark: datetime | None) -> None:
        """The endpoint's stored high-water mark (read at start-up)."""
        self.endpoints[endpoint].high_water_mark = mark

    def started(self, endpoint: Endpoint) -> None:
        """A pass of `endpoint` began."""
        self.endpoints[endpoint].running = True

    def finished(self, result: PassResult) -> EndpointHealth:
        """A pass ended: record it; return the endpoint's updated state."""
        state = self.endpoints[result.endpoint]
        state.running = False
        if result.outcome is Outcome.SKIPPED:
            return state  # another process holds the endpoint: nothing learnt about ours
        state.last_outcome = result.outcome
        state.last_finished = self._clock()
        state.high_water_mark = result.high_water_mark or state.high_water_mark
        if result.outcome is Outcome.SUCCESS:
            state.last_success = state.last_finished
            state.last_error = None
            state.consecutive_failures = 0
        elif result.outcome is Outcome.FAILED:
            state.last_error = str(result.error) if result.error else "failed"
            state.consecutive_failures += 1
        return state

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the JSON body of /healthz)."""
        now = self._clock()
        body: dict[str, Any] = {}
        for endpoint, state in self.endpoints.items():
            fresh = state.last_success is not None and now - state.last_success < self.max_age
            mark = state.high_water_mark
            body[endpoint.value] = {
                "healthy": fresh,
                "high_water_mark": _iso(mark),
                "lag_seconds": round((now - mark).total_seconds(), 3) if mark else None,
                "last_outcome": state.last_outcome.value if state.last_outcome else None,
                "last_finished_at": _iso(state.last_finished),
                "last_success_at": _iso(state.last_success),
                "last_error": state.last_error,
                "consecutive_failures": state.consecutive_failures,
                "running": state.running,
            }
        healthy = all(e["healthy"] for e in body.values())
        return healthy, {
            "status": "ok" if healthy else "unhealthy",
            "checked_at": isoformat_z(now),
            "max_age_seconds": self.max_age.total_seconds(),
            "endpoints": body,
        }


def build_app(health: Health, metrics: Metrics) -> web.Application:
    """The aiohttp application serving /healthz and /metrics."""

    async def healthz(request: web.Request) -> web.Response:
        healthy, body = health.report()
        return web.json_response(body, status=200 if healthy else 503)

    async def metrics_text(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_text)
    return app


@asynccontextmanager
async def serve(app: web.Application, host: str, port: int) -> AsyncIterator[int]:
    """Serve `app` on host:port until the block exits; yields the bound port (for port 0)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield int(runner.addresses[0][1]) if runner.addresses else port
    finally:
        await runner.cleanup()
