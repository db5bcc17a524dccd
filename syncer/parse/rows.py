"""Row types and their conversions: what a CSV field or a JSON value means, typed.

A row is a plain tuple (cheap to build, cheap to COPY): one value per column of
`endpoint.columns`, in that order, then one last element `extra`, a dict of the values of
columns this version does not know (None when there are none). Files (`metadata_json`) become
a tuple of `(file_name, file_extension, lines_added, lines_deleted, extra)` tuples.

The careful converters here raise ValueError with a readable reason; the CSV parser
(parser.py) falls back on them to name what is wrong with a record, and the JSON
endpoints use them for every value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from syncer.endpoints import FILE_KEYS, Column, Endpoint, Kind

Row = tuple[Any, ...]
FileEntry = tuple[str | None, str | None, int | None, int | None, dict[str, Any] | None]

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
_FILE_JSON_KEYS = frozenset(key.json_name for key in FILE_KEYS)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that could not be read: its text, why, and where it was.

    `line` is the record's number within the CSV block it was read from (the block's header
    being record 1), or the item's position among a JSON endpoint's results.
    """

    raw: str
    reason: str
    line: int


def row_as_dict(endpoint: Endpoint, row: Row) -> dict[str, Any]:
    """A row as snake_case names; files as a list of dicts under `files`, `extra` when present."""
    named: dict[str, Any] = {}
    for column, value in zip(endpoint.columns, row, strict=False):
        if column.kind is Kind.FILES:
            named["files"] = [file_as_dict(entry) for entry in value]
        else:
            named[column.name] = value
    if row[-1] is not None:
        named["extra"] = row[-1]
    return named


def file_as_dict(entry: FileEntry) -> dict[str, Any]:
    """A file tuple as a dict named like `ai_code_change_files`' columns."""
    pairs = zip(FILE_KEYS, entry[:4], strict=True)
    named: dict[str, Any] = {key.column: value for key, value in pairs}
    if entry[-1] is not None:
        named["extra"] = entry[-1]
    return named


def json_row(endpoint: Endpoint, item: Any, line: int) -> Row | Rejected:
    """One item of a JSON endpoint (camelCase keys) as the same row tuple the CSV gives."""
    if not isinstance(item, dict):
        return Rejected(json.dumps(item, ensure_ascii=False), "item is not a JSON object", line)
    values: list[Any] = []
    known: set[str] = set()
    for column in endpoint.columns:
        key = "metadata" if column.kind is Kind.FILES else _camel(column.name)
        known.add(key)
        try:
            values.append(_json_value(column, item.get(key)))
        except ValueError as exc:
            return Rejected(json.dumps(item, ensure_ascii=False), f"{column.name}: {exc}", line)
    extra = {key: value for key, value in item.items() if key not in known}
    values.append(extra or None)
    return tuple(values)


def _json_value(column: Column, value: Any) -> Any:
    """A JSON value typed like the CSV converter types its text."""
    if value is None or value == "":
        if column.required:
            raise ValueError("required value is missing")
        return () if column.kind is Kind.FILES else None
    return _JSON_TYPED[column.kind](value)


def _json_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"unexpected JSON value {_short(value)}")
    text = str(value)
    if "\x00" in text:
        raise ValueError("contains a NUL character")
    return text


def _json_int(value: Any) -> int:
    if isinstance(value, str):
        return to_int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{_short(value)} is not an integer")
    return _bigint(value)


def _json_bool(value: Any) -> bool:
    if isinstance(value, str):
        return _to_bool(value)
    if not isinstance(value, bool):
        raise ValueError(f"{_short(value)} is not true or false")
    return value


def _json_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{_short(value)} is not an ISO 8601 timestamp")
    return to_timestamp(value)


def _json_files(value: Any) -> tuple[FileEntry, ...]:
    if not isinstance(value, list):
        raise ValueError("metadata is not an array")
    return _file_entries(value)


_JSON_TYPED: dict[Kind, Callable[[Any], Any]] = {
    Kind.TEXT: _json_text,
    Kind.INT: _json_int,
    Kind.BOOL: _json_bool,
    Kind.TIMESTAMP: _json_timestamp,
    Kind.FILES: _json_files,
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the careful converters: each raises ValueError with a readable reason -----------------


def careful_converter(column: Column) -> Callable[[str], Any]:
    """A converter of one column's text that names what is wrong."""
    typed = _TEXT_TYPED[column.kind]
    empty: Any = () if column.kind is Kind.FILES else None

    def convert(text: str) -> Any:
        if text == "":
            if column.required:
                raise ValueError("required value is empty")
            return empty
        return typed(text)

    return convert


def _to_text(text: str) -> str:
    return text


def to_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{_short(text)} is not an integer") from None
    return _bigint(value)


def _bigint(value: int) -> int:
    if not BIGINT_MIN <= value <= BIGINT_MAX:
        raise ValueError(f"{_short(value)} does not fit a bigint")
    return value


def _to_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"{_short(text)} is not true or false")
    return lowered == "true"


def to_timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{_short(text)} is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def to_files(text: str) -> tuple[FileEntry, ...]:
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"broken JSON ({exc})") from None
    if not isinstance(entries, list):
        raise ValueError("is not a JSON array")
    return _file_entries(entries)


def _file_entries(entries: Iterable[Any]) -> tuple[FileEntry, ...]:
    """The metadata array as file tuples, in array order."""
    files: list[FileEntry] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"entry {position} is not a JSON object")
        name = entry.get("fileName")
        extension = entry.get("fileExtension")
        added = entry.get("linesAdded")
        deleted = entry.get("linesDeleted")
        for text in (name, extension):
            if text is not None and (not isinstance(text, str) or "\x00" in text):
                raise ValueError(f"entry {position}: bad file name or extension {_short(text)}")
        for count in (added, deleted):
            if count is not None and (type(count) is not int or not -(2**63) <= count < 2**63):
                raise ValueError(f"entry {position}: bad line count {_short(count)}")
        extra = None
        if not _FILE_JSON_KEYS.issuperset(entry):
            extra = {key: value for key, value in entry.items() if key not in _FILE_JSON_KEYS}
        files.append((name, extension, added, deleted, extra or None))
    return tuple(files)


_TEXT_TYPED: dict[Kind, Callable[[str], Any]] = {
    Kind.TEXT: _to_text,
    Kind.INT: to_int,
    Kind.BOOL: _to_bool,
    Kind.TIMESTAMP: to_timestamp,
    Kind.FILES: to_files,
}
