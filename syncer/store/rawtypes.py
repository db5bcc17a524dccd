"""SQL that types the raw path's staged CSV text exactly as the typed parser types it.

Each expression accepts what `syncer.parse.converter` accepts, with the same value, and raises on
anything else (see `fail`): the writer then reads the block the typed way, which names and
quarantines the bad rows one by one.
"""

from __future__ import annotations

from syncer.endpoints import Column, Endpoint, Kind

#: ISO 8601 as `datetime.fromisoformat` reads it and PostgreSQL reads it the same way:
#: no leap second, no hour 24, at most microseconds, `Z` or a ±HH:MM offset (none = UTC).
_ISO = (
    "^(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9]"
    "(:[0-5][0-9](\\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$"
)
#: 2025-07-30T14:12:30.123Z, in the session's TimeZone (UTC: see `rawsql.prepare_raw`).
_CANONICAL = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'
SQL_TYPE = {
    Kind.TEXT: "text",
    Kind.INT: "bigint",
    Kind.BOOL: "boolean",
    Kind.TIMESTAMP: "timestamptz",
}


def fail(value: str) -> str:
    """An expression that raises, naming `value` in the error (bigint typed)."""
    return f"concat('!', {value})::bigint"


def convert(column: Column) -> str:
    """SQL typing one staged text column like the typed parser types it; a required column
    that is empty raises here, not at the upsert (which waits for its turn)."""
    typed = _typed(column)
    if not column.required:
        return typed
    c = column.name
    raise_ = f"{fail(c)}::text::{SQL_TYPE[column.kind]}"
    return f"CASE WHEN coalesce({c}, '') = '' THEN {raise_} ELSE {typed} END"


def _typed(column: Column) -> str:
    c = column.name
    if column.kind is Kind.INT:
        return f"NULLIF({c}, '')::bigint"
    if column.kind is Kind.BOOL:
        return (
            f"CASE coalesce({c}, '') WHEN '' THEN NULL WHEN 'true' THEN true "
            f"WHEN 'false' THEN false ELSE {fail(c)} > 0 END"
        )
    if column.kind is Kind.TIMESTAMP:
        # The API's own spelling is checked by a round trip (a fifth of the regex's cost):
        # text that is exactly the canonical rendering of its value reads alike in Python.
        return (
            f"CASE WHEN coalesce({c}, '') = '' THEN NULL WHEN length({c}) = 24 AND "
            f"to_char({c}::timestamptz, '{_CANONICAL}') = {c} THEN {c}::timestamptz "
            f"WHEN {c} ~ '{_ISO}' THEN {c}::timestamptz ELSE to_timestamp({fail(c)}) END"
        )
    return f"NULLIF({c}, '')"


def json_text(value: str) -> str:
    return (
        f"CASE coalesce(jsonb_typeof({value}), 'null') WHEN 'null' THEN NULL "
        f"WHEN 'string' THEN {value} #>> '{{}}' ELSE {fail(value)}::text END"
    )


def json_int(value: str) -> str:
    # jsonb keeps a number's scale, so 12.0 fails the cast as the typed parser rejects it;
    # an exponent (1e2) it would read as 100: `_NOEXPONENT` refuses those first.
    return (
        f"CASE coalesce(jsonb_typeof({value}), 'null') WHEN 'null' THEN NULL "
        f"WHEN 'number' THEN {value}::text::bigint ELSE {fail(value)} END"
    )


def typed_columns(endpoint: Endpoint) -> str:
    """`name type, …` of an endpoint's typed columns (the file list aside), in CSV order."""
    return ", ".join(
        f"{c.name} {SQL_TYPE[c.kind]}" for c in endpoint.columns if c.kind is not Kind.FILES
    )


#: A letter of the 0x / 0o / 0b prefixes that PostgreSQL 16+ reads in an integer (Python not).
RADIX = "[xXoObB]"


JSON_VALUE = {Kind.TEXT: json_text, Kind.INT: json_int}
#: A JSON number with an exponent, which the typed parser rejects and jsonb would read (a
#: string that merely looks like one sends its block the typed way: slower, never wrong).
EXPONENT = r"[:,[][[:space:]]*-?[0-9]+(\.[0-9]+)?[eE]"
METADATA = (
    f"CASE WHEN s.metadata_json ~ '{EXPONENT}' THEN {fail('s.metadata_json')}::text "
    "ELSE s.metadata_json END::jsonb"
)
