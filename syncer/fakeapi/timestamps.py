"""Millisecond epoch ↔ the API's `2025-07-30T14:12:03.000Z`, fast: table look-ups, no datetime."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from syncer.timespec import isoformat_z

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DAY_MS = 86_400_000


def to_ms(moment: datetime) -> int:
    """An aware datetime as integer milliseconds since the epoch (truncated)."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def ceil_ms(moment: datetime) -> int:
    """An aware datetime as milliseconds since the epoch, rounded up (the first ms in range)."""
    ms = to_ms(moment)
    return ms + 1 if moment.microsecond % 1000 else ms


def from_ms(ms: int) -> datetime:
    """Integer milliseconds since the epoch as an aware UTC datetime."""
    return EPOCH + timedelta(milliseconds=ms)


class TimestampFormatter:
    """Formats epoch milliseconds exactly as `timespec.isoformat_z`, from precomputed pieces."""

    def __init__(self) -> None:
        #: `HH:MM:SS.` by second of the day, `mmmZ` by millisecond, `YYYY-MM-DDT` by day
        self.clock = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}." for s in range(86_400)]
        self.millis = [f"{m:03d}Z" for m in range(1000)]
        self.days: dict[int, str] = {}

    def day(self, day: int) -> str:
        """`YYYY-MM-DDT` of a day number since the epoch."""
        prefix = self.days.get(day)
        if prefix is None:
            prefix = self.days[day] = isoformat_z(from_ms(day * DAY_MS))[:11]
        return prefix

    def format(self, ms: int) -> str:
        """Render epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
        day, rem = divmod(ms, DAY_MS)
        return self.day(day) + self.clock[rem // 1000] + self.millis[rem % 1000]
