"""A block of whole CSV records in, typed rows (or rejected rows) out: the careful path.

Rows and their conversions are defined in `syncer.parse.rows`. Where records end in a
stream is found once, by `syncer.parse.blocks.BlockCutter`; this reads one of its blocks.

How it stays fast: the block goes to the C `csv` reader in one call, and each record is
converted by one function compiled from the header (`syncer.parse.converter`); anything
unusual makes it raise, and the record is converted again column by column to name what is
wrong. A block that is not plain CSV (a stray quote, a quoted field left open) is first cut
the exact way (`syncer.parse.records.salvage`), so a bad record is quarantined on its own.
"""

from __future__ import annotations

import csv
import gc
import io
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import structlog

from syncer.endpoints import Column, Endpoint
from syncer.errors import DataError
from syncer.parse.blocks import RawBlock
from syncer.parse.converter import Convert, compile_converter, extra_reader, no_extra, refuse
from syncer.parse.records import salvage, split_records
from syncer.parse.rows import Rejected, Row, careful_converter

log = structlog.get_logger(__name__)

_BAD_TEXT = re.compile("[\x00\udc80-\udcff]")  # NUL, or bytes that were not UTF-8
_UNTERMINATED = "malformed CSV: unterminated quoted field"


def parse_block(endpoint: Endpoint, block: RawBlock) -> list[Row | Rejected]:
    """The block's records as rows, each one that cannot be read as a `Rejected` with its text.

    Records are numbered within the block, its header being record 1. A quoted field still
    open (the server never closed it: a cut stream fails in the client before its last block)
    quarantines its first line, and what follows that line is read as records. Raises
    `DataError` when the header is unreadable or lacks a required column.
    """
    reader = _Reader(endpoint, _decode(block.header)[0])
    text, dirty = _decode(block.data)
    if block.plain or '"' not in text:
        return reader.read(text, dirty)
    out: list[Row | Rejected] = []
    for start, end, open_quote in salvage(text, final=True):
        if open_quote:
            out.append(reader.unterminated(text[start:end]))
        else:
            out += reader.read(text[start:end], dirty)
    return out


class _Reader:
    """One header's columns: the compiled converter, the careful one, and the record count."""

    def __init__(self, endpoint: Endpoint, header: str) -> None:
        self.endpoint = endpoint
        try:
            names = next(csv.reader(io.StringIO(header)), [])
        except csv.Error as exc:
            raise DataError(f"{endpoint.csv_path}: unreadable CSV header: {exc}") from None
        self._records = 1  # the header is record 1
        self._start(names)

    def read(self, text: str, dirty: bool) -> list[Row | Rejected]:
        """Whole records to rows via the compiled converter; the careful path for anything odd."""
        gc_was_enabled = gc.isenabled()
        gc.disable()  # rows are acyclic; collecting during a block only costs time
        try:
            return self._read(text, dirty or "\x00" in text)
        finally:
            if gc_was_enabled:
                gc.enable()

    def unterminated(self, line: str) -> Rejected:
        """The first line of a record whose quoted field never closes, for the quarantine."""
        self._records += 1
        log.warning("unterminated quoted field quarantined", endpoint=self.endpoint.value,
                    record=self._records)  # fmt: skip
        return Rejected(line.rstrip("\r\n"), _UNTERMINATED, self._records)

    def _read(self, text: str, dirty: bool) -> list[Row | Rejected]:
        convert = self._convert if not dirty else refuse
        careful = self._check
        out: list[Row | Rejected] = []
        append = out.append
        first = self._records + 1
        line = first - 1
        try:
            for line, fields in enumerate(csv.reader(io.StringIO(text)), first):
                try:
                    append(convert(fields))
                except Exception:  # noqa: BLE001 - any failure: the careful path names it
                    if (checked := careful(fields, line, None)) is not None:
                        append(checked)
        except csv.Error:
            return self._read_one_by_one(text, first)
        self._records = line
        return out

    def _read_one_by_one(self, text: str, first: int) -> list[Row | Rejected]:
        """Slow path for records the csv module refused: each record on its own."""
        out: list[Row | Rejected] = []
        records = split_records(text)
        for line, record in enumerate(records, first):
            try:
                fields = _fields_of(record)
            except csv.Error as exc:
                out.append(Rejected(record, f"malformed CSV: {exc}", line))
                continue
            checked = self._check(fields, line, record)
            if checked is not None:
                out.append(checked)
        self._records = first - 1 + len(records)
        return out

    def _check(self, fields: list[str], line: int, raw: str | None) -> Row | Rejected | None:
        """Convert one record column by column; a Rejected naming the first problem."""
        if not fields:
            return None  # a blank line carries nothing
        if len(fields) != self._width:
            return _reject(fields, raw, f"expected {self._width} fields, got {len(fields)}", line)
        for value in fields:
            if (bad := _BAD_TEXT.search(value)) is not None:
                what = "a NUL character" if bad.group() == "\x00" else "bytes that are not UTF-8"
                return _reject(fields, raw, f"contains {what}", line)
        values: list[Any] = []
        for index, column, convert in self._careful:
            try:
                values.append(convert(fields[index] if index is not None else ""))
            except ValueError as exc:
                return _reject(fields, raw, f"{column.name}: {exc}", line)
        values.append(self._extra(fields))
        return tuple(values)

    def _start(self, header: list[str]) -> None:
        """Map columns by header name, check required ones, compile the converter."""
        names = [name.strip().lstrip("\ufeff") for name in header]
        known = {column.name for column in self.endpoint.columns}
        positions: dict[str, int] = {}
        unknown: list[tuple[str, int]] = []
        for index, name in enumerate(names):
            if name in known and name not in positions:
                positions[name] = index
            else:
                unknown.append((name, index))
                _warn_unknown_column(self.endpoint.value, name)
        missing = [c.name for c in self.endpoint.columns if c.required and c.name not in positions]
        if missing:
            raise DataError(
                f"{self.endpoint.csv_path}: the CSV has no {', '.join(missing)} column "
                f"(header: {','.join(names)[:300]})"
            )
        plan = [(positions.get(column.name), column) for column in self.endpoint.columns]
        self._width = len(names)
        self._careful: list[tuple[int | None, Column, Callable[[str], Any]]] = [
            (index, column, careful_converter(column)) for index, column in plan
        ]
        self._extra: Callable[[list[str]], dict[str, str | None] | None] = (
            extra_reader(unknown) if unknown else no_extra
        )
        self._convert: Convert = compile_converter(plan, self._width, self._extra)


@cache
def _warn_unknown_column(endpoint: str, column: str) -> None:
    """Log a column this version does not know, once per process (the cache is the memory)."""
    log.warning("unknown CSV column kept in extra", endpoint=endpoint, column=column)


def _decode(data: bytes) -> tuple[str, bool]:
    """Decode strictly (fast); on bad UTF-8, escape the bad bytes and say the text is dirty."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape"), True


def _fields_of(record: str) -> list[str]:
    """One record's fields, also when it holds a bare carriage return outside quotes.

    The csv module refuses a lone CR in an unquoted field; writers that end lines with LF
    only do not quote it. It is swapped for NUL (absent, or the record is rejected anyway)
    while parsing and put back after.
    """
    body = record[:-1] if record.endswith("\n") else record
    body = body[:-1] if body.endswith("\r") else body
    if "\r" not in body or "\x00" in body:
        return next(csv.reader(io.StringIO(body)), [])
    fields = next(csv.reader(io.StringIO(body.replace("\r", "\x00"))), [])
    return [field.replace("\x00", "\r") for field in fields]


def _reject(fields: list[str], raw: str | None, reason: str, line: int) -> Rejected:
    """A Rejected whose raw text is the record itself, or the fields written back as CSV."""
    if raw is None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(fields)
        raw = buffer.getvalue()
    return Rejected(raw.rstrip("\r\n"), reason, line)
