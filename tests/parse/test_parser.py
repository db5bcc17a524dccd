"""The product's CSV path (`BlockCutter` blocks read by `parse_block`) turns any chunking of the
API's bytes, cut into blocks of any size, into the same typed rows, or says why."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncer.endpoints import Column, Endpoint, Kind
from syncer.errors import DataError
from syncer.parse.blocks import BlockCutter, RawBlock, cut_blocks
from syncer.parse.parser import _warn_unknown_column, parse_block
from syncer.parse.records import MAX_RECORD_SIZE, RESYNC_SIZE, records_end
from syncer.parse.rows import BIGINT_MAX, BIGINT_MIN, Rejected, Row
from syncer.timespec import isoformat_z
from tests.csvpath import SMALL, WHOLE, chunked, only_rows, read_bytes, read_chunks, unnumbered
from tests.parse.samples import (
    CHANGE_ROWS,
    CHANGES_CSV,
    COMMIT_HEADER,
    COMMIT_LINES,
    COMMIT_ROWS,
    COMMITS_CSV,
    UTC,
)


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
        width = len(text.split("\n", 1)[0].split(","))
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
    assert only_rows(read_bytes(endpoint, data)) == rows


def test_every_chunk_boundary_gives_the_same_rows() -> None:
    """Split at every byte: inside UTF-8 characters, quotes, and the quoted newline."""
    data = ("\ufeff" + COMMITS_CSV.replace("\n", "\r\n")).encode()
    expected = read_chunks(Endpoint.COMMITS, [data])
    assert len(expected) == 2
    for target in (*SMALL, WHOLE):
        assert read_chunks(Endpoint.COMMITS, [data], target) == expected, target
        for cut in range(len(data) + 1):
            pieces = [data[:cut], data[cut:]]
            assert read_chunks(Endpoint.COMMITS, pieces, target) == expected, (target, cut)
        for cut in range(0, len(data), 3):
            pieces = [data[:cut], data[cut : cut + 2], data[cut + 2 : cut + 5], data[cut + 5 :]]
            assert read_chunks(Endpoint.COMMITS, pieces, target) == expected, (target, cut)


def parse_each(endpoint: Endpoint, blocks: list[RawBlock]) -> list[Row | Rejected]:
    return [item for block in blocks for item in parse_block(endpoint, block)]


def test_a_record_is_yielded_only_once_its_newline_arrived() -> None:
    cutter = BlockCutter(1)  # a block as soon as a record is whole
    head, rest = COMMITS_CSV.encode().split(b"\n", 1)
    assert cutter.feed(head + b"\n") == []
    first, second = rest.split(b"\n", 1)
    assert cutter.feed(first) == [], "no newline yet: the record may go on"
    assert parse_each(Endpoint.COMMITS, cutter.feed(b"\n")) == [COMMIT_ROWS[0]]
    quoted_newline = second.index(b"\n")
    assert cutter.feed(second[: quoted_newline + 1]) == [], "the newline is inside quotes"
    assert parse_each(Endpoint.COMMITS, cutter.feed(second[quoted_newline + 1 :])) == [
        COMMIT_ROWS[1]
    ]
    assert cutter.close() is None


def test_a_quoted_field_open_at_the_end_of_the_stream_is_quarantined() -> None:
    # The client raises StreamInterrupted for a cut connection before the parser's close, so
    # an open quote here is what the server sent: retrying would fail the same way forever.
    data = COMMITS_CSV.encode()
    cut = data.index("改行".encode())
    open_line = data[data.index(b"e5f6g7h8") : cut].decode()
    reason = "malformed CSV: unterminated quoted field"
    cutter = BlockCutter(1)
    assert parse_each(Endpoint.COMMITS, cutter.feed(data[:cut])) == [COMMIT_ROWS[0]]
    last = cutter.close()
    assert last is not None
    assert not last.plain
    assert parse_block(Endpoint.COMMITS, last) == [Rejected(open_line, reason, 2)]
    assert read_chunks(Endpoint.COMMITS, [data[:cut]]) == [  # one block: records 2 and 3
        COMMIT_ROWS[0], Rejected(open_line, reason, 3),
    ]  # fmt: skip


PLAIN_LINE = (  # no quote anywhere: nothing in it can close a quoted field left open before it
    "p1,user_p,p@company.com,company/repo,main,true,1,2,3,4,5,6,7,8,msg,"
    "2025-07-30T14:00:00.000Z,2025-07-30T14:00:01.000Z\n"
)
PLAIN_ROW = read_chunks(Endpoint.COMMITS, [(COMMIT_HEADER + "\n" + PLAIN_LINE).encode()])[0]
#: a quote in the middle of an unquoted field: `csv` reads it as a character
STRAY = 'zz99,user_z,z@company.com,,,,8"5,15,30,5,25,3,,,,,2025-07-30T13:00:00.000Z\n'
#: a quote opening the field that never closes
UNTERMINATED = 'zz99,user_z,z@company.com,,,,"85,15,30,5,25,3,,,,,2025-07-30T13:00:00.000Z\n'


def read_all(text: str, size: int, target: int = WHOLE) -> list[Row | Rejected]:
    """`text` arriving in chunks of `size` bytes, cut into blocks of about `target` bytes."""
    return read_chunks(Endpoint.COMMITS, chunked(text.encode(), size), target)


def test_an_unterminated_quote_quarantines_its_line_and_the_records_after_it_load() -> None:
    text = COMMIT_HEADER + "\n" + UNTERMINATED + PLAIN_LINE * 3
    for size in (1, 7, 4096):
        assert read_bytes(Endpoint.COMMITS, text.encode(), size) == [
            Rejected(UNTERMINATED.rstrip("\n"), "malformed CSV: unterminated quoted field", 2),
            PLAIN_ROW, PLAIN_ROW, PLAIN_ROW,
        ], size  # fmt: skip


def test_a_stray_quote_in_an_unquoted_field_is_one_bad_value_not_a_cut_stream() -> None:
    # Counting quotes would say every newline after the stray one is inside a field.
    lines = COMMITS_CSV.splitlines(keepends=True)
    text = "".join([lines[0], lines[1], STRAY, *lines[2:]])
    count = Endpoint.COMMITS.columns[6].name
    for size in (1, 5, 64, 100_000):
        got = read_bytes(Endpoint.COMMITS, text.encode(), size)
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
        got = read_bytes(Endpoint.COMMITS, text.encode(), size)
        assert got[1:] == [COMMIT_ROWS[1], COMMIT_ROWS[0]], size
        assert isinstance(got[0], Rejected)
        assert got[0].line == 2


def test_rejected_records_are_numbered_within_their_block() -> None:
    lines = COMMITS_CSV.splitlines(keepends=True)
    text = "".join([lines[0], lines[1], STRAY, *lines[2:]])
    numbers = {
        target: [item.line for item in read_all(text, 7, target) if isinstance(item, Rejected)]
        for target in (1, WHOLE)
    }
    assert numbers == {1: [2], WHOLE: [3]}, "the block's header is record 1"


#: The smallest block a sync pass asks for.
PASS_BLOCK = 16 * 1024


def test_a_stray_quote_does_not_hold_the_rest_of_the_stream_in_memory() -> None:
    cutter = BlockCutter(PASS_BLOCK)
    blocks = cutter.feed((COMMIT_HEADER + "\n" + STRAY).encode())
    body = (COMMIT_LINES[0] + "\n").encode() * 100
    fed = 0
    while fed < 3 * RESYNC_SIZE:
        blocks += cutter.feed(body)
        fed += len(body)
        assert sum(map(len, cutter._pending)) < RESYNC_SIZE + len(body)
    last = cutter.close()
    got = parse_each(Endpoint.COMMITS, blocks + ([last] if last else []))
    assert isinstance(got[0], Rejected)
    assert got[1:] == [COMMIT_ROWS[0]] * (fed // len(body) * 100)


def test_an_endless_quoted_field_is_given_up_after_the_largest_record() -> None:
    cutter = BlockCutter(PASS_BLOCK)
    blocks = cutter.feed((COMMIT_HEADER + "\n" + UNTERMINATED).encode())
    body = PLAIN_LINE.encode() * 1000
    fed = 0
    while fed < MAX_RECORD_SIZE + 2 * len(body):
        blocks += cutter.feed(body)
        fed += len(body)
        assert sum(map(len, cutter._pending)) < MAX_RECORD_SIZE + len(body)
    last = cutter.close()
    got = parse_each(Endpoint.COMMITS, blocks + ([last] if last else []))
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
        rows = only_rows(read_bytes(Endpoint.COMMITS, data))
        only_rows(read_bytes(Endpoint.COMMITS, data))
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
    names = COMMIT_HEADER.split(",")
    keep = [i for i, name in enumerate(names) if name != missing]
    with pytest.raises(DataError, match=f"no {missing} column"):
        read_bytes(Endpoint.COMMITS, reorder(COMMITS_CSV, keep).encode())


def test_missing_optional_column_is_null() -> None:
    names = COMMIT_HEADER.split(",")
    keep = [i for i, name in enumerate(names) if name != "message"]
    rows = only_rows(read_bytes(Endpoint.COMMITS, reorder(COMMITS_CSV, keep).encode()))
    assert [row[14] for row in rows] == [None, None]
    assert rows[0][:14] == COMMIT_ROWS[0][:14]


def test_empty_stream_has_no_rows() -> None:
    assert read_bytes(Endpoint.COMMITS, b"") == []
    assert read_bytes(Endpoint.COMMITS, COMMIT_HEADER.encode() + b"\r\n") == []


async def test_blocks_of_an_async_byte_iterator_read_as_rows() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        data = CHANGES_CSV.encode()
        for start in range(0, len(data), 5):
            yield data[start : start + 5]

    blocks = [block async for block in cut_blocks(chunks(), 1)]
    assert len(blocks) == 2, "a block per record"
    assert parse_each(Endpoint.CHANGES, blocks) == CHANGE_ROWS
    [whole] = [block async for block in cut_blocks(chunks(), WHOLE)]
    assert parse_block(Endpoint.CHANGES, whole) == CHANGE_ROWS


# --- property: whatever the API could send survives serialize → chunk → parse ---------------

_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1)
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


def _line(values: list[str], crlf: bool) -> str:
    """One CSV line as the API writes it: a field holding a "\\r" or "\\n" is quoted.

    csv.writer quotes only for the characters of its line terminator: with "\\n" a bare
    "\\r" would go out unquoted and read back as a CRLF line end. So write with "\\r\\n"
    (which quotes both, as the simulator's `csvtext.quote` does) and end the line as drawn.
    """
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue() if crlf else out.getvalue()[:-2] + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    endpoint=st.sampled_from(list(Endpoint)),
    sizes=st.lists(st.integers(1, 64), min_size=1, max_size=8),
    crlf=st.booleans(),
    target=st.sampled_from([*SMALL, WHOLE]),
)
def test_property_any_row_survives_the_round_trip(
    data: st.DataObject, endpoint: Endpoint, sizes: list[int], crlf: bool, target: int
) -> None:
    rows = data.draw(_rows(endpoint))
    lines = [_line([column.name for column in endpoint.columns], crlf)]
    lines += [_line([_cell(value) for value in row[:-1]], crlf) for row in rows]
    encoded = "".join(lines).encode()
    chunks, start, turn = [], 0, 0
    while start < len(encoded):
        size = sizes[turn % len(sizes)]
        chunks.append(encoded[start : start + size])
        start, turn = start + size, turn + 1
    assert read_chunks(endpoint, chunks, target) == rows


def test_unreadable_header_is_a_data_error() -> None:
    with pytest.raises(DataError, match="unreadable CSV header"):
        read_bytes(Endpoint.COMMITS, b"commit_hash\rx,created_at\nh,2025-01-01T00:00:00Z\n")


@settings(max_examples=300, deadline=None)
@given(
    body=st.lists(st.sampled_from(['"', ",", "\n", "a", "1", PLAIN_LINE, STRAY]), max_size=40),
    size=st.integers(1, 40),
    target=st.sampled_from(SMALL),
)
def test_property_any_text_reads_the_same_in_any_chunks(
    body: list[str], size: int, target: int
) -> None:
    # Stray and unterminated quotes anywhere: cutting by the quote count, cutting again where
    # it lied, and the end-of-stream rules must give what one read of the whole text gives,
    # whatever the chunks and the blocks (rejected records are numbered within their block).
    text = COMMIT_HEADER + "\n" + "".join(body)
    whole = read_all(text, len(text.encode()) + 1)
    assert read_all(text, size) == whole
    assert unnumbered(read_all(text, size, target)) == unnumbered(whole)
    closed = text if text.endswith("\n") else text + "\n"
    if records_end(closed) == len(closed):  # no quote left open: one output per csv record
        records = [record for record in csv.reader(io.StringIO(text)) if record]
        assert len(whole) == len(records) - 1  # the header
