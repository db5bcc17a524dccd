"""The JSON pages of a window, walked to the end and checked against the API's `totalCount`.

The JSON routes are the fallback when a CSV route is not served. A window is always sent with
explicit instants (never `now`), so the set being paged is fixed while the pages are read.
Paging stops at `page × pageSize ≥ totalCount` or at an empty page. The rows read are then
checked against `totalCount`: an amended commit is served (and counted) once per version, so
rows count by (key, created_at); if fewer arrived than the API counted (rows moved between
pages while we read), the window is read once more, then the shortfall is an error.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import structlog

from syncer.client.api import CursorClient
from syncer.endpoints import Endpoint
from syncer.errors import BadRequest, DataError
from syncer.parse.rows import Rejected, Row

log = structlog.get_logger(__name__)

_CREATED = {e: next(i for i, c in enumerate(e.columns) if c.name == "created_at") for e in Endpoint}


async def count(api: CursorClient, endpoint: Endpoint, start: datetime, end: datetime) -> int:
    """The API's own row count for [start, end] (both inclusive): `CursorClient.count`."""
    return await api.count(endpoint, start, end)


async def read_json_window(
    api: CursorClient, endpoint: Endpoint, start: datetime, end: datetime, page_size: int
) -> AsyncGenerator[list[Row | Rejected], None]:
    """The rows of [start, end] from the JSON pages, one list per page.

    After a short read the window is read again from its first page, so rows may come twice
    (the upserts make that harmless). A 400 to a page size above 1 halves the size once for the
    rest of the process, when a `pageSize=1` request for the same window is accepted (the range
    was not the problem); otherwise the 400 is raised for the caller to cut the window.
    """
    for attempt in (1, 2):
        seen: set[tuple[str, Any]] = set()
        rejected = total = 0
        async for rows, counted in _pages(api, endpoint, start, end, page_size):
            total = counted
            for row in rows:
                if isinstance(row, Rejected):
                    rejected += 1  # no trustworthy key, but the API counted it
                else:
                    seen.add((row[0], row[_CREATED[endpoint]]))
            yield rows
        if len(seen) + rejected >= total:
            return
        log.warning(
            "json_window_short", endpoint=endpoint.value, counted=total, read=len(seen) + rejected,
            attempt=attempt,
        )  # fmt: skip
    raise DataError(
        f"{endpoint.json_path}: the API counted {total} rows for {start.isoformat()}.."
        f"{end.isoformat()} but its pages held {len(seen) + rejected}, twice"
    )


async def _pages(
    api: CursorClient, endpoint: Endpoint, start: datetime, end: datetime, page_size: int
) -> AsyncGenerator[tuple[list[Row | Rejected], int], None]:
    """(rows, totalCount) of each page in turn."""
    page = 1
    size = api.page_sizes.get(endpoint, page_size)
    while True:
        try:
            result = await api.fetch_page(endpoint, start, end, page=page, page_size=size)
        except BadRequest as exc:
            if page != 1 or size <= 1 or endpoint in api.page_sizes or exc.status != 400:
                raise
            await count(api, endpoint, start, end)  # a 400 here too: the range is the problem
            size = api.page_sizes[endpoint] = max(1, size // 2)
            log.warning(
                "json_page_size_halved", endpoint=endpoint.value, page_size=size, reason=str(exc)
            )
            continue
        yield result.rows, result.total_count
        if not result.rows or page * max(result.page_size, 1) >= result.total_count:
            return
        page += 1
