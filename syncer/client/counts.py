"""The API's own row count for a span: one cheap JSON request (`pageSize=1`, `totalCount`).

The API's range filter includes both ends, to the millisecond (`startDate <= createdAt <=
endDate`). Spans here are half-open, `[start, end)`, so that adjacent spans never both count a
row on their boundary: the request asks for `[start, end - 1 ms]`, and the store counts
`start <= created_at < end`. Both ends are whole milliseconds, as the API's timestamps are.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from syncer.client.api import CursorClient
from syncer.endpoints import Endpoint

#: The API's timestamp resolution, and the gap between a span's end and its last instant.
MS = timedelta(milliseconds=1)


def floor_ms(moment: datetime) -> datetime:
    """`moment` without its sub-millisecond part (what the API's ISO form carries)."""
    return moment - timedelta(microseconds=moment.microsecond % 1000)


async def count_rows(
    api: CursorClient, endpoint: Endpoint, start: datetime, end: datetime | None
) -> int:
    """How many rows the API counts with `start <= createdAt < end` (one request).

    `end=None`: up to the API's own `now`, as a pass's newest window is read.
    """
    return await api.count(endpoint, floor_ms(start), None if end is None else floor_ms(end) - MS)
