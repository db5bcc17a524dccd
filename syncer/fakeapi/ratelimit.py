"""The API's rate limit: N requests per period, per team and per endpoint, sliding window."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimit:
    """Admits `requests` per `period` seconds for each key; refusals are not counted."""

    def __init__(
        self, requests: int, period: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.requests = requests
        self.period = period
        self.clock = clock
        self.admitted: dict[tuple[str, str], deque[float]] = {}

    def check(self, team: str, path: str) -> int | None:
        """Admit a request (None) or say how many whole seconds until a slot frees."""
        now = self.clock()
        stamps = self.admitted.setdefault((team, path), deque())
        while stamps and stamps[0] <= now - self.period:
            stamps.popleft()
        if len(stamps) < self.requests:
            stamps.append(now)
            return None
        return max(1, math.ceil(stamps[0] + self.period - now))
