"""The JSON endpoints' pages: one response's body as the same typed rows the CSV gives."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import aiohttp

from syncer.endpoints import Endpoint
from syncer.errors import DataError
from syncer.parse.rows import Rejected, Row, json_row


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a JSON endpoint, its items as the same rows the CSV gives."""

    rows: list[Row | Rejected]
    total_count: int
    page: int
    page_size: int


async def read_page(
    endpoint: Endpoint, response: aiohttp.ClientResponse, first_line: int
) -> AsyncGenerator[Page, None]:
    """The one Page of a JSON response."""
    try:
        body: Any = await response.json(content_type=None)
    except ValueError:
        raise DataError(f"{endpoint.json_path}: the response is not JSON") from None
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise DataError(f"{endpoint.json_path}: the response has no items array")
    rows = [json_row(endpoint, item, first_line + index) for index, item in enumerate(items)]
    yield Page(
        rows=rows,
        total_count=_int_or(body.get("totalCount"), len(items)),
        page=_int_or(body.get("page"), 1),
        page_size=_int_or(body.get("pageSize"), len(items)),
    )


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
