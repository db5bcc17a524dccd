"""Row number ↔ createdAt: non-decreasing in the row number, so a window is an index range."""

from __future__ import annotations


class Timeline:
    """`count` rows spread over [start_ms, anchor_ms), then `live_rate` rows a minute after it."""

    def __init__(self, count: int, start_ms: int, anchor_ms: int, live_rate: float) -> None:
        self.count = count
        self.start_ms = start_ms
        self.anchor_ms = anchor_ms
        self.span = max(anchor_ms - start_ms, 1)
        #: sub-second spread that keeps createdAt non-decreasing (below the gap between rows)
        self.jitter = max(1, min(1000, self.span // count)) if count else 1
        self.ms_per_live_row = 60_000.0 / live_rate if live_rate > 0 else 0.0

    def created_ms(self, index: int) -> int:
        """createdAt of row `index`, in epoch milliseconds."""
        if index < self.count:
            return self.start_ms + index * self.span // self.count + index * 7919 % self.jitter
        return self.anchor_ms + int((index - self.count) * self.ms_per_live_row)

    def first_at_or_after(self, ms: int) -> int:
        """The smallest row number whose createdAt is >= ms (may be past every row)."""
        if self.count and ms <= self.created_ms(self.count - 1):
            guess = max(0, (ms - self.start_ms) * self.count // self.span)
        elif not self.ms_per_live_row:
            return self.count
        else:
            guess = self.count + max(0, int((ms - self.anchor_ms) / self.ms_per_live_row))
        while guess > 0 and self.created_ms(guess - 1) >= ms:
            guess -= 1
        while self.created_ms(guess) < ms:
            guess += 1
        return guess

    def visible(self, index: int, now_ms: int) -> bool:
        """Whether row `index` exists and its createdAt has passed."""
        if index < 0 or (index >= self.count and not self.ms_per_live_row):
            return False
        return self.created_ms(index) <= now_ms
