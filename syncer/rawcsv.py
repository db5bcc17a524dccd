"""Response bytes cut into blocks of complete CSV records, for PostgreSQL to parse as they are.

The raw fast path never parses records in Python. It finds record boundaries by quote parity
on bytes (UTF-8 multibyte sequences never contain `"` or a newline), reads the header once,
and hands each block of complete records to `COPY … (FORMAT csv)` untouched.

Python's `csv` module and PostgreSQL's CSV parser agree on well-formed CSV (RFC 4180 with LF
or CRLF line ends) and disagree on some malformed input (a quote inside an unquoted field).
`is_plain` checks a block against that grammar; a block that fails goes the typed way.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from syncer.endpoints import Endpoint
from syncer.errors import StreamInterrupted

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
    """Fed response bytes, returns blocks of complete records of at least `target` bytes."""

    def __init__(self, path: str, target: int) -> None:
        self._path = path
        self._target = target
        self._pending: list[bytes] = []
        self._size = 0
        self._odd = False  # whether the pending bytes hold an odd number of quotes
        self._started = False
        self.header: bytes | None = None
        self.names: tuple[str, ...] = ()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Take the next chunk; the blocks (about `target` bytes each) it completed."""
        self._pending.append(chunk)
        self._size += len(chunk)
        self._odd ^= bool(chunk.count(b'"') & 1)
        if self.header is None:
            self._take_header()
            if self.header is None:
                return []
        if self._size < self._target:
            return []
        data = b"".join(self._pending)
        blocks = []
        start = 0
        while len(data) - start >= self._target:
            end = _boundary_after(data, start, start + self._target - 1)
            if end < 0:
                break
            blocks.append(data[start:end])
            start = end
        rest = data[start:]
        self._pending = [rest] if rest else []
        self._size = len(rest)
        self._odd = bool(rest.count(b'"') & 1)
        return blocks

    def close(self) -> bytes | None:
        """End of stream: the last records (the final one may lack its line end)."""
        if self._odd:
            raise StreamInterrupted(f"{self._path}: the stream ended inside a quoted field")
        if self.header is None:
            self._take_header(final=True)
        data = b"".join(self._pending)
        self._pending, self._size = [], 0
        return data or None

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


def _boundary_after(data: bytes, start: int, pos: int) -> int:
    """Index just past the first newline at or after `pos` outside quotes, or -1.

    `start` is a record boundary: quote parity is counted from there.
    """
    newline = data.find(b"\n", pos)
    if newline < 0:
        return -1
    odd = bool(data.count(b'"', start, newline) & 1)
    while odd:
        following = data.find(b"\n", newline + 1)
        if following < 0:
            return -1
        odd ^= bool(data.count(b'"', newline, following) & 1)
        newline = following
    return newline + 1


async def cut_blocks(
    path: str, chunks: AsyncIterator[bytes], target: int
) -> AsyncGenerator[RawBlock, None]:
    """Blocks of complete records of a response, each with the response's header."""
    cutter = BlockCutter(path, target)
    async for chunk in chunks:
        for data in cutter.feed(chunk):
            assert cutter.header is not None
            yield RawBlock(cutter.header, cutter.names, data)
    last = cutter.close()
    if last is not None and cutter.header is not None:
        yield RawBlock(cutter.header, cutter.names, last)
