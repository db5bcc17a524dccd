"""The CSV parser turns any chunking of the API's bytes into the same typed rows, or says why."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncer.endpoints import Column, Endpoint, Kind
from syncer.errors import DataError
from syncer.parse.parser import CsvParser, _warn_unknown_column, parse_batches, parse_stream
from syncer.parse.records import MAX_RECORD_SIZE, RESYNC_SIZE, records_end
from syncer.parse.rows import BIGINT_MAX, BIGINT_MIN, Rejected, Row, json_row, row_as_dict
from syncer.timespec import isoformat_z

UTC = timezone.utc
COMMIT_HEADER = ",".join(column.name for column in Endpoint.COMMITS.columns)
CHANGE_HEADER = ",".join(column.name for column in Endpoint.CHANGES.columns)

COMMIT_LINES = [
    # the API's own sample
    "a1b2c3d4,user_3k9x8q...,developer@company.com,company/repo,main,true,120,30,50,10,40,5,"
    '30,15,"Refactor: extract analytics client",2025-07-30T14:12:03.000Z,2025-07-30T14:12:30.000Z',
    # quoted comma, doubled quotes, a newline, Japanese; empty optional fields
    'e5f6g7h8,user_x,dev@company.com,,,,85,15,30,5,25,3,,,"修正: ""引用"", 改行\nあり",,'
    "2025-07-30T13:45:45.000Z",
]
COMMIT_ROWS: list[Row] = [
    (
        "a1b2c3d4", "user_3k9x8q...", "developer@company.com", "company/repo", "main", True,
        120, 30, 50, 10, 40, 5, 30, 15, "Refactor: extract analytics client",
        datetime(2025, 7, 30, 14, 12, 3, tzinfo=UTC), datetime(2025, 7, 30, 14, 12, 30, tzinfo=UTC),
        None,
    ),
    (
        "e5f6g7h8", "user_x", "dev@company.com", None, None, None, 85, 15, 30, 5, 25, 3, None,
        None, '修正: "引用", 改行\nあり', None, datetime(2025, 7, 30, 13, 45, 45, tzinfo=UTC), None,
    ),
]  # fmt: skip
COMMITS_CSV = COMMIT_HEADER + "\n" + "\n".join(COMMIT_LINES) + "\n"

CHANGE_LINES = [
    "749356201,user_3k9x8q...,developer@company.com,COMPOSER,gpt-4o,18,4,2025-07-30T15:10:12.000Z,"
    '"[{""fileName"":""src/analytics/report.ts"",""fileExtension"":""ts"",""linesAdded"":12,'
    '""linesDeleted"":3},{""fileExtension"":""tsx"",""linesAdded"":6,""linesDeleted"":1,'
    '""language"":""TypeScript""}]"',
    "749356202,user_3k9x8q...,developer@company.com,BRAND_NEW_SOURCE,,8,2,"
    "2025-07-30T15:08:45.000Z,",
]
CHANGE_ROWS: list[Row] = [
    (
        "749356201", "user_3k9x8q...", "developer@company.com", "COMPOSER", "gpt-4o", 18, 4,
        datetime(2025, 7, 30, 15, 10, 12, tzinfo=UTC),
        (
            ("src/analytics/report.ts", "ts", 12, 3, None),
            (None, "tsx", 6, 1, {"language": "TypeScript"}),  # privacy mode: no fileName
        ),
        None,
    ),
    (
        "749356202", "user_3k9x8q...", "developer@company.com", "BRAND_NEW_SOURCE", None, 8, 2,
        datetime(2025, 7, 30, 15, 8, 45, tzinfo=UTC), (), None,
    ),
]  # fmt: skip
CHANGES_CSV = CHANGE_HEADER + "\n" + "\n".join(CHANGE_LINES) + "\n"


def parse_chunks(endpoint: Endpoint, chunks: Iterable[bytes]) -> list[Row | Rejected]:
    parser = CsvParser(endpoint)
    out: list[Row | Rejected] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    out.extend(parser.close())
    return out


def parse_bytes(endpoint: Endpoint, data: bytes, size: int = 7) -> list[Row | Rejected]:
    return parse_chunks(endpoint, (data[i : i + size] for i in range(0, len(data), size)))


def only_rows(items: list[Row | Rejected]) -> list[Row]:
    assert not [item for item in items if isinstance(item, Rejected)]
    return [item for item in items if not isinstance(item, Rejected)]


def reorder(text: str, order: list[int]) -> str:
    records = list(csv.reader(io.StringIO(text, newline="")))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for record in records:
        writer.writerow([record[i] for i in order])
    return out.getvalue()


@pytest.mark.parametrize(
    ("endpoint", "text", "rows"),
    [(Endpoint.COMMITS, COMMITS_CSV, COMMIT_ROWS), (Endpoint.CHANGES, CHANGES_CSV, CHANGE_ROWS)],
)
@pytest.mark.parametrize(
    "variant",
    ["plain", "bom", "crlf", "bom+crlf", "no final newline", "reordered"],
)
def test_variants_parse_to_the_same_rows(
    endpoint: Endpoint, text: str, rows: list[Row], variant: str
) -> None:
    if "reordered" in variant:
        width = len(endpoint.columns)
        text = reorder(text, list(reversed(range(width))))
    if "crlf" in variant:
        text = text.replace("\n", "\r\n")  # also inside the quoted field: kept as written
        rows = [tuple(v.replace("\n", "\r\n") if isinstance(v, str) else v for v in row)
                for row in rows]  # fmt: skip
    if "no final newline" in variant:
        text = text.rstrip("\n")
    data = text.encode()
    if "bom" in variant:
        data = b"\xef\xbb\xbf" + data
    assert only_rows(parse_bytes(endpoint, data)) == rows


def test_every_chunk_boundary_gives_the_same_rows() -> None:
    """Split at every byte: inside UTF-8 characters, quotes, and the quoted newline."""
    data = ("\ufeff" + COMMITS_CSV.replace("\n", "\r\n")).encode()
    expected = parse_chunks(Endpoint.COMMITS, [data])
    assert len(expected) == 2
    for cut in range(len(data) + 1):
        assert parse_chunks(Endpoint.COMMITS, [data[:cut], data[cut:]]) == expected, cut
    for cut in range(0, len(data), 3):
        pieces = [data[:cut], data[cut : cut + 2], data[cut + 2 : cut + 5], data[cut + 5 :]]
        assert parse_chunks(Endpoint.COMMITS, pieces) == expected, cut


def test_a_record_is_yielded_only_once_its_newline_arrived() -> None:
    parser = CsvParser(Endpoint.COMMITS)
    head, rest = COMMITS_CSV.encode().split(b"\n", 1)
    assert parser.feed(head + b"\n") == []
    first, second = rest.split(b"\n", 1)
    assert parser.feed(first) == [], "no newline yet: the record may go on"
    assert parser.feed(b"\n") == [COMMIT_ROWS[0]]
    quoted_newline = second.index(b"\n")
    assert parser.feed(second[: quoted_newline + 1]) == [], "the newline is inside quotes"
    assert parser.feed(second[quoted_newline + 1 :]) == [COMMIT_ROWS[1]]
    assert parser.close() == []


def test_a_quoted_field_open_at_the_end_of_the_stream_is_quarantined() -> None:
    # The client raises StreamInterrupted for a cut connection before the parser's close, so
    # an open quote here is what the server sent: retrying would fail the same way forever.
    data = COMMITS_CSV.encode()
    cut = data.index("改行".encode())
    parser = CsvParser(Endpoint.COMMITS)
    assert parser.feed(data[:cut]) == [COMMIT_ROWS[0]]
    rejected = parser.close()
    assert rejected == [
        Rejected(data[data.index(b"e5f6g7h8") : cut].decode(), "malformed CSV: unterminated "
                 "quoted field", 3),
    ]  # fmt: skip


PLAIN_LINE = (  # no quote anywhere: nothing in it can close a quoted field left open before it
    "p1,user_p,p@company.com,company/repo,main,true,1,2,3,4,5,6,7,8,msg,"
    "2025-07-30T14:00:00.000Z,2025-07-30T14:00:01.000Z\n"
)
PLAIN_ROW = CsvParser(Endpoint.COMMITS).feed((COMMIT_HEADER + "\n" + PLAIN_LINE).encode())[0]
#: a quote in the middle of an unquoted field: `csv` reads it as a character
STRAY = 'zz99,user_z,z@company.com,,,,8"5,15,30,5,25,3,,,,,2025-07-30T13:00:00.000Z\n'
#: a quote opening the field that never closes
UNTERMINATED = 'zz99,user_z,z@company.com,,,,"85,15,30,5,25,3,,,,,2025-07-30T13:00:00.000Z\n'


def read_all(text: str, size: int) -> list[Row | Rejected]:
    data = text.encode()
    parser = CsvParser(Endpoint.COMMITS)
    got = [row for i in range(0, len(data), size) for row in parser.feed(data[i : i + size])]
    return got + parser.close()


def test_an_unterminated_quote_quarantines_its_line_and_the_records_after_it_load() -> None:
    text = COMMIT_HEADER + "\n" + UNTERMINATED + PLAIN_LINE * 3
    for size in (1, 7, 4096):
        assert read_all(text, size) == [
            Rejected(UNTERMINATED.rstrip("\n"), "malformed CSV: unterminated quoted field", 2),
            PLAIN_ROW, PLAIN_ROW, PLAIN_ROW,
        ], size  # fmt: skip


def test_a_stray_quote_in_an_unquoted_field_is_one_bad_value_not_a_cut_stream() -> None:
    # Counting quotes would say every newline after the stray one is inside a field.
    lines = COMMITS_CSV.splitlines(keepends=True)
    text = "".join([lines[0], lines[1], STRAY, *lines[2:]])
    count = Endpoint.COMMITS.columns[6].name
    for size in (1, 5, 64, 100_000):
        got = read_all(text, size)
        assert [got[0], got[2:]] == [COMMIT_ROWS[0], [COMMIT_ROWS[1]]], size
        bad = got[1]
        assert isinstance(bad, Rejected)
        assert (bad.line, bad.reason.split(":")[0]) == (3, count)
        assert next(csv.reader([bad.raw])) == next(csv.reader([STRAY])), "the same fields"


def test_a_stray_quote_before_a_multiline_field_does_not_move_the_next_boundary() -> None:
    # After a stray quote the count is off by one, so the newline inside the next quoted
    # field looks like a record boundary; the exact grammar catches it.
    text = COMMIT_HEADER + "\n" + STRAY + COMMIT_LINES[1] + "\n" + COMMIT_LINES[0] + "\n"
    for size in (3, 40, 100_000):
        got = read_all(text, size)
        assert got[1:] == [COMMIT_ROWS[1], COMMIT_ROWS[0]], size
        assert isinstance(got[0], Rejected)
        assert got[0].line == 2


def test_a_stray_quote_does_not_hold_the_rest_of_the_stream_in_memory() -> None:
    parser = CsvParser(Endpoint.COMMITS)
    got = parser.feed((COMMIT_HEADER + "\n" + STRAY).encode())
    body = (COMMIT_LINES[0] + "\n").encode() * 100
    fed = 0
    while fed < 3 * RESYNC_SIZE:
        got += parser.feed(body)
        fed += len(body)
        assert parser._pending_size < RESYNC_SIZE + len(body)
    got += parser.close()
    assert isinstance(got[0], Rejected)
    assert got[1:] == [COMMIT_ROWS[0]] * (fed // len(body) * 100)


def test_an_endless_quoted_field_is_given_up_after_the_largest_record() -> None:
    parser = CsvParser(Endpoint.COMMITS)
    got = parser.feed((COMMIT_HEADER + "\n" + UNTERMINATED).encode())
    body = PLAIN_LINE.encode() * 1000
    fed = 0
    while fed < MAX_RECORD_SIZE + 2 * len(body):
        got += parser.feed(body)
        fed += len(body)
        assert parser._pending_size < MAX_RECORD_SIZE + len(body)
    got += parser.close()
    assert got[0] == Rejected(
        UNTERMINATED.rstrip("\n"), "malformed CSV: unterminated quoted field", 2
    )
    assert got[1:] == [PLAIN_ROW] * (fed // len(PLAIN_LINE))


def test_unknown_column_goes_to_extra_and_is_logged_once() -> None:
    _warn_unknown_column.cache_clear()
    text = reorder(COMMITS_CSV, [*range(17), 0]).splitlines()
    text[0] = text[0].rsplit(",", 1)[0] + ",ai_share"
    data = ("\n".join(text) + "\nzz,,,,,,,,,,,,,,,,2025-01-01T00:00:00Z,\n").encode()
    with structlog.testing.capture_logs() as logs:
        rows = only_rows(parse_bytes(Endpoint.COMMITS, data))
        only_rows(parse_bytes(Endpoint.COMMITS, data))
    assert [row[-1] for row in rows] == [{"ai_share": "a1b2c3d4"}, {"ai_share": "e5f6g7h8"},
                                         {"ai_share": None}]  # fmt: skip
    assert rows[0][:-1] == COMMIT_ROWS[0][:-1]
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warnings == [
        {"event": "unknown CSV column kept in extra", "endpoint": "commits",
         "column": "ai_share", "log_level": "warning"},
    ]  # fmt: skip


@pytest.mark.parametrize("missing", ["commit_hash", "created_at"])
def test_missing_required_column_is_a_data_error(missing: str) -> None:
    names = [c.name for c in Endpoint.COMMITS.columns]
    keep = [i for i, name in enumerate(names) if name != missing]
    with pytest.raises(DataError, match=f"no {missing} column"):
        parse_bytes(Endpoint.COMMITS, reorder(COMMITS_CSV, keep).encode())


def test_missing_optional_column_is_null() -> None:
    names = [c.name for c in Endpoint.COMMITS.columns]
    keep = [i for i, name in enumerate(names) if name != "message"]
    rows = only_rows(parse_bytes(Endpoint.COMMITS, reorder(COMMITS_CSV, keep).encode()))
    assert [row[14] for row in rows] == [None, None]
    assert rows[0][:14] == COMMIT_ROWS[0][:14]


def test_empty_stream_has_no_rows() -> None:
    assert parse_bytes(Endpoint.COMMITS, b"") == []
    assert parse_bytes(Endpoint.COMMITS, COMMIT_HEADER.encode() + b"\r\n") == []


GOOD = "ok1,,,,,,,,,,,,,,,,2025-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("x1,u,e", "expected 17 fields, got 3"),
        (GOOD.replace("ok1", "x2") + ",surplus", "expected 17 fields, got 18"),
        ("x3,,,,,,many,,,,,,,,,,2025-01-01T00:00:00Z", "total_lines_added: 'many' is not an int"),
        ("x4,,,,,,1.5,,,,,,,,,,2025-01-01T00:00:00Z", "total_lines_added: '1.5' is not an int"),
        (f"x5,,,,,,{2**63},,,,,,,,,,2025-01-01T00:00:00Z", "does not fit a bigint"),
        (f"x6,,,,,,,{-(2**63) - 1},,,,,,,,,2025-01-01T00:00:00Z", "does not fit a bigint"),
        ("x7,,,,,yes,,,,,,,,,,,2025-01-01T00:00:00Z", "is_primary_branch: 'yes' is not true"),
        ("x8,,,,,,,,,,,,,,,,yesterday", "created_at: 'yesterday' is not an ISO 8601"),
        ("x9,,,,,,,,,,,,,,,2025-13-01T00:00:00Z,2025-01-01T00:00:00Z", "commit_ts: '2025-13"),
        ("x10,,,,,,,,,,,,,,,,", "created_at: required value is empty"),
        (",,,,,,,,,,,,,,,,2025-01-01T00:00:00Z", "commit_hash: required value is empty"),
        ("x11,,,,,,,,,,,,,,bad\x00msg,,2025-01-01T00:00:00Z", "contains a NUL character"),
        ("x12,,,,,,,,,,,,,,bad\udcffmsg,,2025-01-01T00:00:00Z", "bytes that are not UTF-8"),
    ],
)
def test_malformed_commit_rows_are_rejected_and_the_stream_goes_on(bad: str, reason: str) -> None:
    text = f"{COMMIT_HEADER}\n{GOOD}\n{bad}\n{GOOD.replace('ok1', 'ok2')}\n"
    data = text.encode("utf-8", "surrogateescape")
    for size in (3, 1 << 20):
        items = parse_bytes(Endpoint.COMMITS, data, size)
        assert [item[0] for item in items if not isinstance(item, Rejected)] == ["ok1", "ok2"]
        [rejected] = [item for item in items if isinstance(item, Rejected)]
        assert reason in rejected.reason
        assert rejected.line == 3, "header is record 1"
        assert rejected.raw.split(",")[0] == bad.split(",")[0]


CHANGE_GOOD = "ok1,,,,,,,2025-01-01T00:00:00Z,"


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ('"[{""fileName"": ""a.ts""}"', "metadata_json: broken JSON"),
        ('"{""fileName"": ""a.ts""}"', "metadata_json: is not a JSON array"),
        ('"[1]"', "entry 0 is not a JSON object"),
        ('"[{}, {""linesAdded"": ""12""}]"', "entry 1: bad line count '12'"),
        ('"[{""linesAdded"": true}]"', "entry 0: bad line count True"),
        ('"[{""fileName"": 3}]"', "entry 0: bad file name or extension 3"),
        ('"[{""fileName"": ""a\\u0000b""}]"', "entry 0: bad file name or extension"),
    ],
)
def test_malformed_metadata_is_rejected(metadata: str, reason: str) -> None:
    bad = f"x1,,,,,,,2025-01-01T00:00:00Z,{metadata}"
    text = f"{CHANGE_HEADER}\n{CHANGE_GOOD}\n{bad}\n{CHANGE_GOOD.replace('ok1', 'ok2')}\n"
    items = parse_bytes(Endpoint.CHANGES, text.encode())
    assert [item[0] for item in items if not isinstance(item, Rejected)] == ["ok1", "ok2"]
    [rejected] = [item for item in items if isinstance(item, Rejected)]
    assert reason in rejected.reason
    assert rejected.line == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("TRUE", True),
        ("False", False),
        (" true ", True),
    ],
)
def test_bools_are_case_insensitive(field: str, value: bool) -> None:
    [row] = only_rows(parse_bytes(Endpoint.COMMITS, f"{COMMIT_HEADER}\n{GOOD}\n".replace(
        ",,,,,,,,,,,,,,,,", f",,,,,{field},,,,,,,,,,,").encode()))  # fmt: skip
    assert row[5] is value


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2025-07-30T14:12:03.000Z", datetime(2025, 7, 30, 14, 12, 3, tzinfo=UTC)),
        ("2025-07-30T14:12:03.5+09:00", datetime(2025, 7, 30, 5, 12, 3, 500000, tzinfo=UTC)),
        ("2025-07-30T14:12:03", datetime(2025, 7, 30, 14, 12, 3, tzinfo=UTC)),
        ("2025-07-30 14:12:03.123456+00:00", datetime(2025, 7, 30, 14, 12, 3, 123456, tzinfo=UTC)),
    ],
)
def test_timestamps_become_aware_utc(text: str, moment: datetime) -> None:
    [row] = only_rows(parse_bytes(Endpoint.COMMITS, f"{COMMIT_HEADER}\nh,{',' * 14}{text},{text}\n"
                                  .encode()))  # fmt: skip
    assert row[15] == row[16] == moment
    assert row[16].utcoffset() == timedelta(0)


def test_bare_carriage_return_in_unquoted_field_is_kept() -> None:
    text = f"{COMMIT_HEADER}\nh1,{',' * 13}a\rb,,2025-01-01T00:00:00Z\n{GOOD}\n"
    rows = only_rows(parse_bytes(Endpoint.COMMITS, text.encode()))
    assert [(row[0], row[14]) for row in rows] == [("h1", "a\rb"), ("ok1", None)]


def test_row_as_dict_names_columns_and_files() -> None:
    named = row_as_dict(Endpoint.CHANGES, CHANGE_ROWS[0])
    assert named["change_id"] == "749356201"
    assert "metadata_json" not in named
    assert "extra" not in named
    assert named["files"] == [
        {"file_name": "src/analytics/report.ts", "file_extension": "ts", "lines_added": 12,
         "lines_deleted": 3},
        {"file_name": None, "file_extension": "tsx", "lines_added": 6, "lines_deleted": 1,
         "extra": {"language": "TypeScript"}},
    ]  # fmt: skip


def test_json_items_give_the_same_rows_as_csv() -> None:
    item = {
        "changeId": "749356201", "userId": "user_3k9x8q...", "userEmail": "developer@company.com",
        "source": "COMPOSER", "model": "gpt-4o", "totalLinesAdded": 18, "totalLinesDeleted": 4,
        "createdAt": "2025-07-30T15:10:12.000Z",
        "metadata": [
            {"fileName": "src/analytics/report.ts", "fileExtension": "ts", "linesAdded": 12,
             "linesDeleted": 3},
            {"fileExtension": "tsx", "linesAdded": 6, "linesDeleted": 1, "language": "TypeScript"},
        ],
    }  # fmt: skip
    assert json_row(Endpoint.CHANGES, item, 1) == CHANGE_ROWS[0]
    assert json_row(Endpoint.CHANGES, {**item, "newField": [1]}, 1)[-1] == {"newField": [1]}
    bad = json_row(Endpoint.CHANGES, {**item, "totalLinesAdded": "lots"}, 7)
    assert isinstance(bad, Rejected)
    assert (bad.line, bad.reason) == (7, "total_lines_added: 'lots' is not an integer")
    assert json.loads(bad.raw)["changeId"] == "749356201"


async def test_parse_stream_over_an_async_byte_iterator() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        data = CHANGES_CSV.encode()
        for start in range(0, len(data), 5):
            yield data[start : start + 5]

    assert [row async for row in parse_stream(Endpoint.CHANGES, chunks())] == CHANGE_ROWS
    batches = [batch async for batch in parse_batches(Endpoint.CHANGES, chunks())]
    assert [row for batch in batches for row in batch] == CHANGE_ROWS


# --- property: whatever the API could send survives serialize → chunk → parse ---------------

_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1)
_INTS = st.integers(BIGINT_MIN, BIGINT_MAX)
_MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
_FILES = st.lists(
    st.tuples(
        st.none() | _TEXT, st.none() | _TEXT, st.none() | _INTS, st.none() | _INTS, st.none()
    ),  # fmt: skip
    max_size=4,
).map(tuple)


def _value(column: Column) -> st.SearchStrategy[Any]:
    typed: st.SearchStrategy[Any] = {
        Kind.TEXT: _TEXT,
        Kind.INT: _INTS,
        Kind.BOOL: st.booleans(),
        Kind.TIMESTAMP: _MOMENTS,
        Kind.FILES: _FILES,
    }[column.kind]
    if column.kind is Kind.FILES:
        return typed
    return typed if column.required else st.none() | typed


def _rows(endpoint: Endpoint) -> st.SearchStrategy[list[Row]]:
    row = st.tuples(*(_value(column) for column in endpoint.columns), st.none())
    return st.lists(row, min_size=1, max_size=8)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return isoformat_z(value)
    if isinstance(value, tuple):
        keys = ("fileName", "fileExtension", "linesAdded", "linesDeleted")
        return json.dumps([
            {key: part for key, part in zip(keys, entry, strict=False) if part is not None}
            for entry in value
        ], ensure_ascii=False)  # fmt: skip
    return str(value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    endpoint=st.sampled_from(list(Endpoint)),
    sizes=st.lists(st.integers(1, 64), min_size=1, max_size=8),
    crlf=st.booleans(),
)
def test_property_any_row_survives_the_round_trip(
    data: st.DataObject, endpoint: Endpoint, sizes: list[int], crlf: bool
) -> None:
    rows = data.draw(_rows(endpoint))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if crlf else "\n")
    writer.writerow([column.name for column in endpoint.columns])
    for row in rows:
        writer.writerow([_cell(value) for value in row[:-1]])
    encoded = out.getvalue().encode()
    chunks, start, turn = [], 0, 0
    while start < len(encoded):
        size = sizes[turn % len(sizes)]
        chunks.append(encoded[start : start + size])
        start, turn = start + size, turn + 1
    assert parse_chunks(endpoint, chunks) == rows


def test_unreadable_header_is_a_data_error() -> None:
    with pytest.raises(DataError, match="unreadable CSV header"):
        parse_bytes(Endpoint.COMMITS, b"commit_hash\rx,created_at\nh,2025-01-01T00:00:00Z\n")


@settings(max_examples=300, deadline=None)
@given(
    body=st.lists(st.sampled_from(['"', ",", "\n", "a", "1", PLAIN_LINE, STRAY]), max_size=40),
    size=st.integers(1, 40),
)
def test_property_any_text_reads_the_same_in_any_chunks(body: list[str], size: int) -> None:
    # Stray and unterminated quotes anywhere: cutting by the quote count, re-reading where it
    # lied, and the end-of-stream rules must give what one read of the whole text gives.
    text = COMMIT_HEADER + "\n" + "".join(body)
    whole = read_all(text, len(text.encode()) + 1)
    assert read_all(text, size) == whole
    closed = text if text.endswith("\n") else text + "\n"
    if records_end(closed) == len(closed):  # no quote left open: one output per csv record
        records = [record for record in csv.reader(io.StringIO(text)) if record]
        assert len(whole) == len(records) - 1  # the header
