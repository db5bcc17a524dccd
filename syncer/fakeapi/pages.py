"""The paginated JSON endpoints: one page of camelCase items in serving order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from syncer.endpoints import Endpoint
from syncer.fakeapi.dataset import Dataset, Row
from syncer.fakeapi.query import Query
from syncer.fakeapi.timestamps import ceil_ms, from_ms
from syncer.timespec import isoformat_z


def camel(name: str) -> str:
    """snake_case → camelCase."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def json_item(
    endpoint: Endpoint, row: Row, primary_absent: bool = False, commit_source: bool = True
) -> dict[str, Any]:
    """A truth row as the API's JSON item (metadata as an array, ISO timestamps)."""
    item: dict[str, Any] = {}
    for column in endpoint.columns:
        if column.name == "commit_source" and not commit_source:
            continue
        if column.name == "metadata_json":
            item["metadata"] = [_file_entry(entry) for entry in row.get("files") or []]
            continue
        value = row.get(column.name)
        if column.name == "is_primary_branch" and value is None and primary_absent:
            continue
        item[camel(column.name)] = isoformat_z(value) if isinstance(value, datetime) else value
    return item


def _file_entry(entry: dict[str, Any]) -> dict[str, Any]:
    item = {} if entry.get("file_name") is None else {"fileName": entry["file_name"]}
    item["fileExtension"] = entry.get("file_extension")
    item["linesAdded"] = entry.get("lines_added")
    item["linesDeleted"] = entry.get("lines_deleted")
    return item


def json_page(dataset: Dataset, endpoint: Endpoint, query: Query) -> dict[str, Any]:
    """`{items, totalCount, page, pageSize}` for a query, newest first unless order is asc.

    Items are each row's final version: the CSV-only faults (duplicates) do not apply here.
    Amended rows come twice (their older copy too), and malformed rows as bad items, when
    those knobs are on; `totalCount` counts every item served.
    """
    if dataset.amend_rate > 0 or dataset.malformed_rate > 0:
        return _careful_page(dataset, endpoint, query)
    pieces = dataset.pieces(endpoint, query.start, query.end)
    if dataset.config.order == "desc":
        pieces = [p[::-1] if isinstance(p, range) else p for p in reversed(pieces)]
    person = dataset.find_user(query.user) if query.user else None
    if query.user and person is None:
        pieces = []
    user_of = dataset.sources[endpoint].user_of
    wanted = None if person is None else dataset.population.users.index(person)
    items: list[dict[str, Any]] = []
    skip, total = (query.page - 1) * query.page_size, 0
    for piece in pieces:
        if isinstance(piece, range) and wanted is None:
            if skip >= len(piece):
                skip, total = skip - len(piece), total + len(piece)
                continue
            taken = piece[skip : skip + query.page_size - len(items)]
            items.extend(_item(dataset, endpoint, index, None) for index in taken)
            skip, total = 0, total + len(piece)
            continue
        if isinstance(piece, range):
            rows: list[tuple[int | None, Row | None]] = [
                (index, None) for index in piece if user_of(index) == wanted
            ]
        else:
            matches = person is None or piece.get("user_id") == person.encoded_id
            rows = [(None, piece)] if matches else []
        for index, row in rows:
            total += 1
            if skip:
                skip -= 1
            elif len(items) < query.page_size:
                items.append(_item(dataset, endpoint, index, row))
    return {"items": items, "totalCount": total, "page": query.page, "pageSize": query.page_size}


def _item(dataset: Dataset, endpoint: Endpoint, index: int | None, row: Row | None) -> Any:
    served = dataset.config.commit_source
    if row is not None:
        return json_item(endpoint, row, commit_source=served)
    assert index is not None
    source = dataset.sources[endpoint]
    typed = source.typed(index, dataset.bump(endpoint, index))
    return json_item(endpoint, typed, source.primary_absent(index), served)


def _careful_page(dataset: Dataset, endpoint: Endpoint, query: Query) -> dict[str, Any]:
    """A page when rows may come twice or broken: every item of the window, then a slice."""
    items = list(_served_items(dataset, endpoint, query))
    if dataset.config.order == "desc":
        items.reverse()
    skip = (query.page - 1) * query.page_size
    page = items[skip : skip + query.page_size]
    return {"items": page, "totalCount": len(items), "page": query.page,
            "pageSize": query.page_size}  # fmt: skip


def _served_items(dataset: Dataset, endpoint: Endpoint, query: Query) -> Iterator[Any]:
    """Every item of the window in ascending createdAt order (an older copy before its row)."""
    source = dataset.sources[endpoint]
    start_ms = ceil_ms(query.start)
    served = dataset.config.commit_source
    for index, row in dataset.rows(endpoint, query.start, query.end, query.user):
        if row is not None:
            yield json_item(endpoint, row, commit_source=served)
            continue
        assert index is not None
        kind = dataset.malformed_kind(endpoint, index)
        if kind is not None:
            yield _broken_item(endpoint, json_item(endpoint, source.typed(index, 0)), kind)
            continue
        delay = dataset.amended(endpoint, index)
        newer = _item(dataset, endpoint, index, None)
        older_ms = source.timeline.created_ms(index) - delay
        if delay and older_ms >= start_ms:
            older = json_item(endpoint, source.typed(index, 0), commit_source=served)
            older["createdAt"] = isoformat_z(from_ms(older_ms))
            if "commitSource" in older:
                older["commitSource"] = None
            first_newer = dataset.config.amend_order == "newer-first"
            # ascending order here: the page reverses it for newest-first serving
            yield from ((older, newer) if first_newer else (newer, older))
            continue
        yield newer


def _broken_item(endpoint: Endpoint, item: dict[str, Any], kind: str) -> dict[str, Any]:
    """An item with one value the API should never send: a client must quarantine it."""
    if kind == "timestamp":
        item["createdAt"] = "2025-13-45T25:61:00.000Z"
    elif kind == "metadata" and endpoint is Endpoint.CHANGES:
        item["metadata"] = "not an array"
    else:
        item["totalLinesAdded"] = "12x"
    return item
