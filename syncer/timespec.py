"""Durations (`30s`, `15m`, `2h`, `1d`) and the API's date forms (ISO, `now`, `Nd`)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RELATIVE_DAYS = re.compile(r"^\s*(\d+)\s*d\s*$", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """Parse `30s`, `15m`, `2h`, `1d` (a bare number means seconds) into a timedelta."""
    value = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return timedelta(seconds=float(value))
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{text!r} is not a duration; use forms like 30s, 15m, 2h, 1d")
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _UNIT_SECONDS[unit.lower()])


def format_duration(delta: timedelta) -> str:
    """Render a timedelta in the largest unit that divides it exactly (`90s`, `15m`, `1d`)."""
    seconds = delta.total_seconds()
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_spec(spec: str, now: datetime | None = None) -> datetime:
    """Resolve the API's date forms to an aware UTC datetime.

    `now`; `Nd` (now minus N days); an ISO date (midnight UTC); an ISO datetime, with `Z`
    or an offset (a datetime without one is taken as UTC).
    """
    now = now or datetime.now(timezone.utc)
    value = spec.strip()
    if value.lower() == "now":
        return now
    match = _RELATIVE_DAYS.match(value)
    if match:
        return now - timedelta(days=int(match.group(1)))
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"{spec!r} is not a date; use an ISO date or datetime, 'now', or 'Nd' (N days ago)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def isoformat_z(moment: datetime) -> str:
    """Format an aware datetime as the API does: `2025-07-30T14:12:03.000Z`."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
