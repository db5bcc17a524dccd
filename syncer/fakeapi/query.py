"""The query string every endpoint accepts: startDate, endDate, page, pageSize, user."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncer.timespec import parse_spec

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class QueryError(ValueError):
    """A parameter the API would answer 400 to."""


@dataclass(frozen=True)
class Query:
    """A parsed query: an inclusive createdAt window, a page, an optional user."""

    start: datetime
    end: datetime
    page: int
    page_size: int
    user: str | None


def _date(
    params: Mapping[str, str], name: str, default: datetime, now: datetime, day_granularity: bool
) -> datetime:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        moment = parse_spec(raw, now=now)
    except ValueError as error:
        raise QueryError(f"Invalid {name}: {error}") from None
    if day_granularity and raw.strip()[:1].isdigit() and not raw.strip().endswith("d"):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)  # an ISO value
    return moment


def _number(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"Invalid {name}: {raw!r} is not an integer") from None
    if not low <= value <= high:
        raise QueryError(f"Invalid {name}: {value} must be between {low} and {high}")
    return value


def parse_query(
    params: Mapping[str, str],
    now: datetime,
    day_granularity: bool = False,
    max_page_size: int = MAX_PAGE_SIZE,
) -> Query:
    """Parse and validate the query string, with the documented defaults.

    With `day_granularity`, ISO values are read as the start of their UTC day, as an API that
    "resolves all dates to the day level" may read them (`now` and `7d` stay instants).
    """
    start = _date(params, "startDate", now - timedelta(days=7), now, day_granularity)
    end = _date(params, "endDate", now, now, day_granularity)
    page = _number(params, "page", 1, 1, 10**9)
    page_size = _number(params, "pageSize", DEFAULT_PAGE_SIZE, 1, max_page_size)
    user = params.get("user") or None
    return Query(start, end, page, page_size, user)
