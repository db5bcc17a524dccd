"""Bytes in, typed rows (or rejected rows) out: the incremental parser of the API's CSV streams.

Rows and their conversions are defined in `syncer.parse.rows`.

How it stays fast: bytes are decoded incrementally, the text is cut at the last newline that
lies outside quotes (quote parity; `syncer.parse.records` where that may be wrong), and each
complete block goes to the C `csv` reader in one call. Each record is then converted by one
function compiled from the header (`syncer.parse.converter`); anything unusual makes it raise, and
the record is converted again column by column to name what is wrong.
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from functools import cache
from typing import Any

import structlog

from syncer.endpoints import Column, Endpoint
from syncer.errors import DataError
from syncer.parse.converter import Convert, compile_converter, extra_reader, no_extra, refuse
from syncer.parse.records import (
    RESYNC_SIZE,
    next_resync,
    records_end,
    salvage,
    split_first_record,
    split_records,
)
from syncer.parse.rows import (
    Rejected,
    Row,
    careful_converter,
)

log = structlog.get_logger(__name__)

_BAD_TEXT = re.compile("[\x00\udc80-\udcff]")  # NUL, or bytes that were not UTF-8


class CsvParser:
    """Fed bytes chunk by chunk, returns the records completed so far as rows or `Rejected`."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._pending: list[str] = []  # text after the last complete record
        self._pending_odd = False  # whether that text holds an odd number of quotes
        self._pending_dirty = False  # whether that text holds NUL or escaped non-UTF-8 bytes
        self._pending_size = 0  # characters of pending text
        self._resync_at = RESYNC_SIZE  # pending size at which an odd count is checked exactly
        self._records = 0  # records read so far, the header included
        self._width = 0
        self._convert: Convert | None = None
        self._careful: list[tuple[int | None, Column, Callable[[str], Any]]] = []
        self._extra: Callable[[list[str]], dict[str, str | None] | None] = no_extra

    def feed(self, chunk: bytes) -> list[Row | Rejected]:
        """Take the next chunk; return every record it completed."""
        text, dirty = self._decode(chunk)
        cut = self._last_boundary(text)
        if cut < 0:
            if text:
                self._pending.append(text)
                self._pending_size += len(text)
                self._pending_odd ^= bool(text.count('"') & 1)
                self._pending_dirty |= dirty
                if self._pending_odd and self._pending_size >= self._resync_at:
                    return self._resync()
            return []
        block = "".join((*self._pending, text[:cut])) if self._pending else text[:cut]
        dirty |= self._pending_dirty
        self._keep(text[cut:], dirty and cut < len(text))
        return self._read(block, dirty)

    def close(self) -> list[Row | Rejected]:
        """End of stream: return the last records, the final one may lack its newline.

        A quoted field still open here was never closed by the server (a cut stream fails in
        the client before this, so this end is the real one): its first line is quarantined
        and what follows it is read as records.
        """
        last, dirty = self._decode(b"", final=True)
        text = "".join((*self._pending, last))
        dirty |= self._pending_dirty
        self._keep("", False)
        if not text:
            return []
        if '"' not in text:
            return self._read(text, dirty)
        return self._salvage(text, dirty, final=True)[0]

    def _keep(self, rest: str, dirty: bool) -> None:
        """Make `rest`, which starts at a record boundary, the pending text."""
        self._pending = [rest] if rest else []
        self._pending_size = len(rest)
        self._pending_odd = bool(rest.count('"') & 1)
        self._pending_dirty = dirty
        self._resync_at = RESYNC_SIZE

    def _resync(self) -> list[Row | Rejected]:
        """Pending text with an odd quote count has grown: find its records the exact way.

        Either a stray quote fooled the count (the records before it are whole), or a quoted
        field is open: a long one is waited for up to `MAX_RECORD_SIZE`, then its first line
        is quarantined as an unterminated quote.
        """
        text, dirty = "".join(self._pending), self._pending_dirty
        out, start = self._salvage(text, dirty, final=False)
        self._keep(text[start:], dirty)
        if self._pending_odd:  # a long quoted field: look again once it has doubled
            self._resync_at = next_resync(self._pending_size)
        return out

    def _salvage(self, text: str, dirty: bool, final: bool) -> tuple[list[Row | Rejected], int]:
        """Read the whole records of `text` found the exact way, quarantine the lines given
        up on (see `records.salvage`); (rows, where the unread rest starts)."""
        out: list[Row | Rejected] = []
        rest = 0
        for start, end, open_quote in salvage(text, final=final):
            piece = text[start:end]
            out += [self._unterminated(piece)] if open_quote else self._read(piece, dirty)
            rest = end
        return out, rest

    def _boundary_lies(self, text: str) -> bool:
        """Whether the quote count misplaced a record boundary in `text` (stray quotes)."""
        if '"' not in text:
            return False
        whole = text if text.endswith("\n") else text + "\n"
        return records_end(whole) < len(whole)

    def _unterminated(self, line: str) -> Rejected:
        """The first line of a record whose quoted field never closes, for the quarantine."""
        self._records += 1
        log.warning("unterminated quoted field quarantined", endpoint=self.endpoint.value,
                    record=self._records)  # fmt: skip
        return Rejected(line.rstrip("\r\n"), "malformed CSV: unterminated quoted field",
                        self._records)  # fmt: skip

    def _decode(self, chunk: bytes, final: bool = False) -> tuple[str, bool]:
        """Decode strictly (fast); on bad UTF-8, escape the bad bytes and say the text is dirty.

        A failed decode leaves the incremental decoder's state untouched, so the same chunk
        can be decoded again with another error handler.
        """
        try:
            return self._decoder.decode(chunk, final), False
        except UnicodeDecodeError:
            self._decoder.errors = "surrogateescape"
            try:
                return self._decoder.decode(chunk, final), True
            finally:
                self._decoder.errors = "strict"

    def _last_boundary(self, text: str) -> int:
        """Index just past the last newline of `text` outside quotes, or -1."""
        pos = text.rfind("\n")
        if pos < 0 or (self._pending_odd and '"' not in text):  # still inside a quoted field
            return -1
        odd = self._pending_odd ^ bool(text.count('"', 0, pos) & 1)
        while odd:
            previous = text.rfind("\n", 0, pos)
            if previous < 0:
                return -1
            odd ^= bool(text.count('"', previous, pos) & 1)
            pos = previous
        return pos + 1

    def _read(self, block: str, dirty: bool) -> list[Row | Rejected]:
        """Parse a block of complete records (the header first, if not seen yet)."""
        if self._convert is None:
            header, block = split_first_record(block)
            try:
                names = next(csv.reader(_lines(header)), [])
            except csv.Error as exc:
                raise DataError(f"{self.endpoint.csv_path}: unreadable CSV header: {exc}") from None
            self._start(names)
            self._records = 1
            if not block:
                return []
        gc_was_enabled = gc.isenabled()
        gc.disable()  # rows are acyclic; collecting during a block only costs time
        try:
            return self._read_body(block, dirty or "\x00" in block)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _read_body(self, block: str, dirty: bool) -> list[Row | Rejected]:
        """Records to rows via the compiled converter; the careful path for anything odd."""
        assert self._convert is not None
        convert = self._convert if not dirty else refuse
        careful = self._check
        out: list[Row | Rejected] = []
        append = out.append
        first = self._records + 1
        line = first - 1
        fields: list[str] = []
        try:
            for line, fields in enumerate(csv.reader(_lines(block)), first):
                try:
                    append(convert(fields))
                except Exception:  # noqa: BLE001 - any failure: the careful path names it
                    if (checked := careful(fields, line, None)) is not None:
                        append(checked)
        except csv.Error:
            return self._read_one_by_one(block, first)
        if fields and fields[-1].endswith("\n") and self._boundary_lies(block):
            return self._reread(block, first, dirty)
        self._records = line
        return out

    def _reread(self, block: str, first: int, dirty: bool) -> list[Row | Rejected]:
        """The quote count cut `block` inside a quoted field (a stray quote came before it).

        Read its whole records again and put the open one back in front of the pending text.
        """
        end = records_end(block)
        rest = block[end:] + "".join(self._pending)
        self._keep(rest, dirty or self._pending_dirty)
        self._records = first - 1
        return self._read_body(block[:end], dirty) if end else []

    def _read_one_by_one(self, block: str, first: int) -> list[Row | Rejected]:
        """Slow path for a block the csv module refused: each record on its own."""
        out: list[Row | Rejected] = []
        records = split_records(block)
        for line, record in enumerate(records, first):
            try:
                fields = _fields_of(record)
            except csv.Error as exc:
                out.append(Rejected(record, f"malformed CSV: {exc}", line))
                continue
            checked = self._check(fields, line, record)
            if checked is not None:
                out.append(checked)
        self._records += len(records)
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
        self._careful = [(index, column, careful_converter(column)) for index, column in plan]
        self._extra = extra_reader(unknown) if unknown else no_extra
        self._convert = compile_converter(plan, self._width, self._extra)


@cache
def _warn_unknown_column(endpoint: str, column: str) -> None:
    """Log a column this version does not know, once per process (the cache is the memory)."""
    log.warning("unknown CSV column kept in extra", endpoint=endpoint, column=column)


async def parse_batches(
    endpoint: Endpoint, chunks: AsyncIterator[bytes]
) -> AsyncGenerator[list[Row | Rejected], None]:
    """Parse a byte stream into lists of rows, one list per chunk that completed records."""
    parser = CsvParser(endpoint)
    async for chunk in chunks:
        if batch := parser.feed(chunk):
            yield batch
    if batch := parser.close():
        yield batch


async def parse_stream(
    endpoint: Endpoint, chunks: AsyncIterator[bytes]
) -> AsyncGenerator[Row | Rejected, None]:
    """Parse a byte stream into rows; a record is yielded only once it is complete."""
    async for batch in parse_batches(endpoint, chunks):
        for item in batch:
            yield item


def _lines(text: str) -> io.StringIO:
    """Lines for csv.reader, each with its LF (a quoted newline is kept only if it is there)."""
    return io.StringIO(text)


def _fields_of(record: str) -> list[str]:
    """One record's fields, also when it holds a bare carriage return outside quotes.

    The csv module refuses a lone CR in an unquoted field; writers that end lines with LF
    only do not quote it. It is swapped for NUL (absent, or the record is rejected anyway)
    while parsing and put back after.
    """
    body = record[:-1] if record.endswith("\n") else record
    body = body[:-1] if body.endswith("\r") else body
    if "\r" not in body or "\x00" in body:
        return next(csv.reader(_lines(body)), [])
    fields = next(csv.reader(_lines(body.replace("\r", "\x00"))), [])
    return [field.replace("\x00", "\r") for field in fields]


def _reject(fields: list[str], raw: str | None, reason: str, line: int) -> Rejected:
    """A Rejected whose raw text is the record itself, or the fields written back as CSV."""
    if raw is None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(fields)
        raw = buffer.getvalue()
    return Rejected(raw.rstrip("\r\n"), reason, line)
