"""Where CSV records end: counting quotes (fast, in C) and the `csv` module's exact grammar.

A record ends at a newline outside quotes. Counting quotes finds those newlines fast, and
is exact for well-formed CSV, where every quote belongs to a quoted field. A quote inside an
unquoted field (`csv` reads it as a character) flips the count, so every later newline looks
like one inside a field. Where the count and the data may disagree, callers ask the grammar.
"""

from __future__ import annotations

import re
from typing import AnyStr

#: Whole records as Python's `csv` module reads them (its default dialect, strict=False): a
#: quote opens a quoted field only at the start of a field, and is an ordinary character
#: anywhere else. Counting quotes finds record boundaries fast but is fooled by such a stray
#: quote; this grammar is the exact answer, used where the count and the data disagree.
_LENIENT_FIELD = r'(?:"[^"]*+(?:""[^"]*+)*+"[^,\n]*+|[^",\n][^,\n]*+|)'
_LENIENT_RECORDS = r"(?:" + _LENIENT_FIELD + r"(?:," + _LENIENT_FIELD + r")*+\n)*+"
_RECORD_TEXT = re.compile(_LENIENT_FIELD + r"(?:," + _LENIENT_FIELD + r")*+\n")
_RECORDS_TEXT = re.compile(_LENIENT_RECORDS)
_RECORDS_BYTES = re.compile(_LENIENT_RECORDS.encode())

#: Pending bytes (or characters) whose quote count is odd are checked with the exact grammar
#: once they reach this size: a stray quote must not hold the rest of a stream in memory.
RESYNC_SIZE = 1 << 20
#: The largest record accepted. A quoted field still open after this much text is taken for
#: an unterminated quote: its first line is quarantined and reading resumes after it.
MAX_RECORD_SIZE = 16 << 20


def next_resync(open_size: int) -> int:
    """Pending size at which to look again at a quoted field open over `open_size`: doubled."""
    return min(max(RESYNC_SIZE, 2 * open_size), MAX_RECORD_SIZE)


def records_end(data: AnyStr, start: int = 0, end: int | None = None) -> int:
    """Index just past the last whole record of `data[start:end]`, read as Python's `csv` does.

    `start` must be a record boundary. Returns `start` when not even one record is whole.
    """
    pattern = _RECORDS_TEXT if isinstance(data, str) else _RECORDS_BYTES
    found = pattern.match(data, start, len(data) if end is None else end)
    return start if found is None else found.end()


def record_end(text: str, start: int = 0) -> int:
    """Index just past the record starting at `start`; the end of `text` if it does not end."""
    found = _RECORD_TEXT.match(text, start)
    return len(text) if found is None else found.end()


def first_line_end(data: AnyStr, start: int = 0) -> int:
    """Index just past the first line end at or after `start`, or the end of `data`."""
    newline = data.find("\n" if isinstance(data, str) else b"\n", start)
    return len(data) if newline < 0 else newline + 1


def salvage(data: AnyStr, start: int = 0, *, final: bool) -> list[tuple[int, int, bool]]:
    """Cut `data[start:]` the exact way: `(start, end, open)` spans, in order.

    A span with `open` False is a run of whole records. One with `open` True is the first
    line of a record whose quoted field stays open, given up on (for the quarantine) once the
    stream has ended (`final`: the last record may also lack its line end) or the record has
    grown past `MAX_RECORD_SIZE`; reading resumes on the next line. What follows the last
    span is the start of a record still open, to wait for.
    """
    newline = "\n" if isinstance(data, str) else b"\n"
    scan = data if not final or data.endswith(newline) else data + newline
    spans: list[tuple[int, int, bool]] = []
    while start < len(data):
        end = min(records_end(scan, start), len(data))
        if end > start:
            spans.append((start, end, False))
            start = end
        if start >= len(data) or not (final or len(data) - start >= MAX_RECORD_SIZE):
            break
        end = first_line_end(data, start)
        spans.append((start, end, True))
        start = end
    return spans


def boundary_after(data: bytes, start: int, pos: int) -> int:
    """Index just past the first newline at or after `pos` outside quotes, or -1.

    `start` is a record boundary: quote parity is counted from there. Inside a quoted field
    only the next quote can end it, so the search jumps from quote to quote, not line to line.
    """
    newline = data.find(b"\n", pos)
    if newline < 0:
        return -1
    odd = bool(data.count(b'"', start, newline) & 1)
    while odd:
        closing = data.find(b'"', newline)
        if closing < 0:
            return -1
        newline = data.find(b"\n", closing)
        if newline < 0:
            return -1
        odd = bool(data.count(b'"', closing + 1, newline) & 1)
    return newline + 1


def split_records(text: str) -> list[str]:
    """The records of `text`, each with its newline, as `csv` reads them."""
    records: list[str] = []
    start = 0
    while start < len(text):
        end = record_end(text, start)
        records.append(text[start:end])
        start = end
    return records
