"""The paginated JSON endpoints: one page of camelCase items in serving order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from syncer.endpoints import Endpoint
from syncer.fakeapi.dataset import Dataset, Row
from syncer.fakeapi.query import Query
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

    Items are each row's final version: the CSV-only faults (duplicates, malformed rows)
    do not apply here.
    """
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
