"""`ApiObserver`: the hooks through which the metrics layer watches the API client."""

from __future__ import annotations

from typing import Protocol

from syncer.errors import ApiError


class ApiObserver(Protocol):
    """Hooks the metrics layer implements to watch the client."""

    def on_request(self, path: str, status: int | str) -> None:
        """A response arrived (its HTTP status), or "error" when none did."""

    def on_rate_limited(self, path: str) -> None:
        """The server answered 429."""

    def on_wait(self, path: str, seconds: float) -> None:
        """The request budget held a request back for `seconds`."""

    def on_retry(self, path: str, error: ApiError) -> None:
        """A failed attempt is about to be retried."""


class NullObserver:
    """An `ApiObserver` that ignores everything."""

    def on_request(self, path: str, status: int | str) -> None:
        """Ignore a response."""

    def on_rate_limited(self, path: str) -> None:
        """Ignore a 429."""

    def on_wait(self, path: str, seconds: float) -> None:
        """Ignore a wait."""

    def on_retry(self, path: str, error: ApiError) -> None:
        """Ignore a retry."""
