"""Response bytes cut into blocks of complete CSV records, for PostgreSQL to parse as they are.

The raw fast path never parses records in Python. It finds record boundaries by quote parity
on bytes (UTF-8 multibyte sequences never contain `"` or a newline), reads the header once,
and hands each block of complete records to `COPY … (FORMAT csv)` untouched.

Python's `csv` module and PostgreSQL's CSV parser agree on well-formed CSV (RFC 4180 with LF
or CRLF line ends) and disagree on some malformed input (a quote inside an unquoted field).
`is_plain` checks a block against that grammar; a block that fails goes the typed way
(`syncer.parse.parser.parse_block`).

`BlockCutter` is the only code that finds where records end in a stream: both paths, raw and
typed, read its blocks.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace

from syncer.endpoints import Endpoint
from syncer.parse.records import (
    RESYNC_SIZE,
    boundary_after,
    next_resync,
    records_end,
    salvage,
)

BOM = b"\xef\xbb\xbf"
_FIELD = rb'(?:"[^"]*+(?:""[^"]*+)*+"|[^",\r\n]*+)'
_PLAIN = re.compile(rb"(?:" + _FIELD + rb"(?:," + _FIELD + rb")*+(?:\r?\n|\Z))*+")
#: A line `\.` ends COPY's input early; such a block goes the typed way.
_END_MARKER = re.compile(rb"(?:^|\n)\\\.\r?(?:\n|\Z)")


@dataclass(frozen=True, slots=True)
class RawBlock:
    """Complete CSV records of one response, with the response's header record."""

    header: bytes  #: the header record, with its line end, without a BOM
    names: tuple[str, ...]  #: the header's column names as the typed parser reads them
    data: bytes  #: whole records; the last one may lack its line end (end of stream)
    plain: bool  #: `is_plain(data)`: PostgreSQL may parse it as it is
    #: the response's final block, yielded once its body has ended (see `cut_blocks`)
    last: bool = False


def header_names(header: bytes) -> tuple[str, ...]:
    """Column names of a header record, stripped as the typed parser strips them."""
    text = header.decode("utf-8", "replace")
    try:
        names = next(csv.reader(io.StringIO(text)), [])
    except csv.Error:
        return ()
    return tuple(name.strip().lstrip("\ufeff") for name in names)


def raw_columns(endpoint: Endpoint, names: tuple[str, ...]) -> list[str] | None:
    """The COPY column list for a header, or None when the typed path must read it.

    Any order and missing optional columns are fine (COPY leaves those NULL). An unknown or
    repeated column (kept in `extra` by the typed path) or a missing required one is not.
    """
    known = {column.name for column in endpoint.columns}
    if not names or len(set(names)) != len(names) or not known.issuperset(names):
        return None
    if any(column.required and column.name not in names for column in endpoint.columns):
        return None
    return list(names)


def is_plain(data: bytes) -> bool:
    """Whether PostgreSQL's CSV reader reads `data` exactly as Python's `csv` module does."""
    if b'"' in data and _PLAIN.fullmatch(data) is None:
        return False
    return b"\\." not in data or _END_MARKER.search(data) is None


class BlockCutter:
    """Fed response bytes, returns blocks of complete records of at least `target` bytes.

    Each block says whether it `is_plain`. Boundaries are found by counting quotes; where a
    block is not plain a stray quote may have misled the count, so its end is checked with
    the exact grammar and moved back to a real record boundary if needed.
    """

    def __init__(self, target: int) -> None:
        self._target = target
        self._pending: list[bytes] = []
        self._size = 0
        self._odd = False  # whether the pending bytes hold an odd number of quotes
        self._resync_at = RESYNC_SIZE  # pending size at which an odd count is checked exactly
        self._searched = 0  # pending bytes searched for a boundary in vain (all odd newlines)
        self._started = False
        self.header: bytes | None = None
        self.names: tuple[str, ...] = ()

    def feed(self, chunk: bytes) -> list[RawBlock]:
        """Take the next chunk; the blocks (about `target` bytes each) it completed."""
        quotes = chunk.count(b'"')
        # a quoted field open over all the searched bytes runs on through a chunk with no quote
        open_field = self._searched == self._size and self._odd and not quotes
        self._pending.append(chunk)
        self._size += len(chunk)
        self._odd ^= bool(quotes & 1)
        if self.header is None:
            self._take_header()
            if self.header is None:
                return []
        resync_due = self._odd and self._size >= self._resync_at
        if (open_field or self._size < self._target) and not resync_due:
            if open_field:
                self._searched = self._size  # no boundary in this chunk either
            return []
        data = b"".join(self._pending)
        blocks: list[tuple[bytes, bool]] = []
        start, searched = 0, self._searched
        self._searched = 0
        while len(data) - start >= self._target:
            end = boundary_after(data, start, max(start + self._target - 1, searched))
            if end < 0:
                self._searched = len(data) - start
                break
            plain = is_plain(data[start:end])
            if not plain:
                if (exact := _exact_end(data, start, end)) < 0:
                    break
                if exact != end:
                    end, plain = exact, is_plain(data[start:exact])
            blocks.append((data[start:end], plain))
            start = end
        resync = len(data) - start >= self._resync_at and bool(data.count(b'"', start) & 1)
        if resync:
            start = self._resync(data, start, blocks)
            self._searched = len(data) - start  # what is left is one record, open to the end
        self._keep(data[start:], resync)
        return [self._block(piece, plain) for piece, plain in blocks]

    def close(self) -> RawBlock | None:
        """End of stream: the last records (the final one may lack its line end).

        A quoted field still open at the end is left in the data, which is then not plain:
        the typed reader quarantines its first line (see `parse_block`).
        """
        if self.header is None:
            self._take_header(final=True)
        data = b"".join(self._pending)
        self._pending, self._size = [], 0
        return self._block(data, is_plain(data)) if data else None

    def _block(self, data: bytes, plain: bool) -> RawBlock:
        assert self.header is not None  # blocks are cut only once the header is read
        return RawBlock(self.header, self.names, data, plain)

    def _keep(self, rest: bytes, resynced: bool) -> None:
        """Make `rest`, which starts at a record boundary, the pending bytes."""
        self._pending = [rest] if rest else []
        self._size = len(rest)
        self._odd = bool(rest.count(b'"') & 1)
        if not self._odd:
            self._resync_at = RESYNC_SIZE
        elif resynced:  # a long quoted field is open: look again once it has doubled
            self._resync_at = next_resync(len(rest))

    def _resync(self, data: bytes, start: int, blocks: list[tuple[bytes, bool]]) -> int:
        """An odd count over many bytes: cut whole records the exact way; returns the rest's start.

        Either a stray quote misled the count (the records up to here are whole) or a quoted
        field is open: a long one is waited for up to `MAX_RECORD_SIZE`, then its first line
        goes out as a block of its own, for the typed reader to quarantine.
        """
        for span_start, end, open_quote in salvage(data, start, final=False):
            piece = data[span_start:end]
            blocks.append((piece, not open_quote and is_plain(piece)))  # an open quote: not plain
            start = end
        return start

    def _take_header(self, final: bool = False) -> None:
        data = b"".join(self._pending)
        if not self._started:  # a BOM may arrive split across chunks
            if len(data) < len(BOM) and BOM.startswith(data) and not final:
                return
            self._started = True
            if data.startswith(BOM):
                data = data[len(BOM) :]
                self._pending, self._size = [data], len(data)
        pos, odd = 0, False
        while (newline := data.find(b"\n", pos)) >= 0:
            odd ^= bool(data.count(b'"', pos, newline) & 1)
            pos = newline + 1
            if not odd:
                break
        else:
            if not final or not data:
                return
            pos = len(data)
        self.header, rest = data[:pos], data[pos:]
        self.names = header_names(self.header)
        self._pending = [rest] if rest else []
        self._size = len(rest)
        self._odd = bool(rest.count(b'"') & 1)


def _exact_end(data: bytes, start: int, end: int) -> int:
    """The real end of a block the quote count ended at `end`, or -1 if its last record is open.

    Only blocks that are not plain need this: in plain CSV every quote is a field's.
    """
    exact = records_end(data, start, end)
    if exact > start:
        return exact
    exact = records_end(data, start)  # the first record is longer than the count said
    return exact if exact > start else -1


async def cut_blocks(chunks: AsyncIterator[bytes], target: int) -> AsyncGenerator[RawBlock, None]:
    """Blocks of complete records of a response, each with the response's header; the final
    one flagged `last`.

    Which block is the last is known only when the body ends, so the blocks a chunk completes
    are yielded once the next chunk has come (or the end): a chunk later, not a block later,
    which would hold a whole block more in memory.
    """
    cutter = BlockCutter(target)
    ready: list[RawBlock] = []
    async for chunk in chunks:
        for block in ready:
            yield block
        ready = cutter.feed(chunk)
    if (rest := cutter.close()) is not None:
        ready.append(rest)
    for block in ready[:-1]:
        yield block
    if ready:
        yield replace(ready[-1], last=True)
