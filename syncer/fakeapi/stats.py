"""`Stats`: what the simulator served, for tests to assert on."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    """Requests by (path, status), 429s served, CSV rows and bytes streamed."""

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    rate_limited: int = 0
    bytes_sent: int = 0
    streams_cut: int = 0
    #: redirected downloads that arrived with an Authorization header
    downloads_with_auth: int = 0

    def record(self, path: str, status: int) -> None:
        """Count one response."""
        self.requests[path, status] += 1
        if status == 429:
            self.rate_limited += 1

    def count(self, path: str | None = None, status: int | None = None) -> int:
        """How many responses matched the path and/or status."""
        return sum(
            n
            for (p, s), n in self.requests.items()
            if (path is None or p == path) and (status is None or s == status)
        )

    def reset(self) -> None:
        """Forget everything counted so far."""
        self.requests.clear()
        self.rate_limited = self.bytes_sent = self.streams_cut = self.downloads_with_auth = 0
