"""CSV text of a window, rendered block by block (optionally cached), in server-side pages."""

from __future__ import annotations

import math
import random
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from syncer.endpoints import Endpoint
from syncer.fakeapi.csvtext import field, metadata_json, quote
from syncer.fakeapi.dataset import Dataset, Piece, Row

#: values of the unknown `agent_version` column added by the `extra_column` fault
AGENT_VERSIONS = ("1.4.2", "1.5.0", "1.5.1", "2.0.0-beta.3")
EXTRA_COLUMN = "agent_version"
#: where `extra_column="insert"` puts the unknown column
INSERT_AT = 3
#: positions of created_at in the generated CSV fields, and of commit_source (commits only)
CREATED_FIELD = {Endpoint.COMMITS: 16, Endpoint.CHANGES: 7}
SOURCE_FIELD = 17


def agent_version(key: str) -> str:
    """The `agent_version` value served for a row key under the `extra_column` fault."""
    return AGENT_VERSIONS[zlib.crc32(key.encode()) % len(AGENT_VERSIONS)]


@dataclass(frozen=True)
class CsvFormat:
    """How CSV text is laid out: line ending, unknown column, column order."""

    crlf: bool = False
    extra_column: str | None = None
    #: seed of the shuffled column order, or None for the documented order
    permute_seed: int | None = None
    #: documented columns the data set does not serve (`commit_source` under its knob)
    missing: tuple[str, ...] = ()

    @property
    def terminator(self) -> str:
        """The line ending."""
        return "\r\n" if self.crlf else "\n"

    @property
    def plain(self) -> bool:
        """Whether fields go out in the documented order with nothing added."""
        return self.extra_column is None and self.permute_seed is None

    def order(self, width: int) -> list[int]:
        """Positions of the (possibly widened) field list, in output order."""
        positions = list(range(width))
        if self.permute_seed is not None:
            random.Random(self.permute_seed).shuffle(positions)
        return positions

    def header(self, endpoint: Endpoint) -> str:
        """The header line."""
        names = [c.name for c in endpoint.columns if c.name not in self.missing]
        return ",".join(self.arrange(names, EXTRA_COLUMN))

    def arrange(self, fields: list[str], extra: str) -> list[str]:
        """Add the unknown column and shuffle, as configured."""
        if self.extra_column == "append":
            fields = [*fields, extra]
        elif self.extra_column is not None:
            fields = [*fields[:INSERT_AT], extra, *fields[INSERT_AT:]]
        if self.permute_seed is None:
            return fields
        return [fields[position] for position in self.order(len(fields))]


class BlockCache:
    """Rendered CSV blocks kept by key, least recently used dropped past `limit` bytes."""

    def __init__(self, megabytes: float) -> None:
        self.limit = int(megabytes * 1024 * 1024)
        self.size = 0
        self.blocks: OrderedDict[tuple[Any, ...], tuple[str, tuple[int, ...]]] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> tuple[str, tuple[int, ...]] | None:
        """A cached block, or None."""
        found = self.blocks.get(key)
        if found is not None:
            self.blocks.move_to_end(key)
        return found

    def put(self, key: tuple[Any, ...], value: tuple[str, tuple[int, ...]]) -> None:
        """Keep a block if it fits."""
        if self.limit <= 0 or len(value[0]) > self.limit:
            return
        self.blocks[key] = value
        self.size += len(value[0])
        while self.size > self.limit:
            _, (text, _) = self.blocks.popitem(last=False)
            self.size -= len(text)


class CsvRenderer:
    """Renders one window of one endpoint as CSV text pieces (header first)."""

    def __init__(
        self,
        dataset: Dataset,
        endpoint: Endpoint,
        fmt: CsvFormat,
        cache: BlockCache | None = None,
        user: str | None = None,
        start_ms: int = 0,
    ) -> None:
        self.dataset = dataset
        #: the window's start: an amended row's older copy is served only from there on
        self.start_ms = start_ms
        self.endpoint = endpoint
        self.source = dataset.sources[endpoint]
        self.fmt = fmt
        self.cache = cache
        self.user = user
        person = dataset.find_user(user) if user is not None else None
        self.person = person
        self.wanted = None if person is None else dataset.population.users.index(person)
        self.page_rows = max(1, dataset.config.csv_page_rows)
        self.block_rows = math.gcd(1000, self.page_rows)
        self.descending = dataset.config.order == "desc"

    def render(self, pieces: list[Piece]) -> Iterator[str]:
        """Header, then rows page by page; a page's duplicated rows follow it again."""
        yield self.fmt.header(self.endpoint) + self.fmt.terminator
        if self.user is not None and self.person is None:
            return
        if self.descending:
            pieces = pieces[::-1]
        page: int | None = None
        pending: list[int] = []
        for piece in pieces:
            if not isinstance(piece, range):
                if self.person is None or piece.get("user_id") == self.person.encoded_id:
                    yield self.row_line(piece)
                continue
            for start, stop in self._blocks(piece):
                if start // self.page_rows != page:
                    yield self._copies(pending)
                    page, pending = start // self.page_rows, []
                text, copies = self._block(start, stop)
                yield text
                pending.extend(copies)
        yield self._copies(pending)

    def _blocks(self, rows: range) -> Iterator[tuple[int, int]]:
        """Split a range at block boundaries, in serving order."""
        size = self.block_rows
        bounds = [rows.start, *range((rows.start // size + 1) * size, rows.stop, size), rows.stop]
        spans = list(zip(bounds, bounds[1:], strict=False))
        return iter(spans[::-1] if self.descending else spans)

    def _block(self, start: int, stop: int) -> tuple[str, tuple[int, ...]]:
        """Rows [start, stop) as text, and the rows to serve again after the page."""
        key = (self.endpoint, start, stop, self.descending, self.fmt, self.wanted,
               self.dataset.duplicate_rate, self.dataset.malformed_rate)  # fmt: skip
        cacheable = (
            self.cache is not None
            and stop - start == self.block_rows
            and self.dataset.amend_rate <= 0  # an older copy's presence depends on the window
        )
        if cacheable and self.cache is not None:
            found = self.cache.get(key)
            if found is not None:
                return found
        indices: range | list[int]
        indices = range(stop - 1, start - 1, -1) if self.descending else range(start, stop)
        if self.wanted is not None:
            user_of, wanted = self.source.user_of, self.wanted
            indices = [i for i in indices if user_of(i) == wanted]
        rendered = self._lines(indices)
        if cacheable and self.cache is not None:
            self.cache.put(key, rendered)
        return rendered

    def _lines(self, indices: range | list[int]) -> tuple[str, tuple[int, ...]]:
        dataset, endpoint = self.dataset, self.endpoint
        fields = self.source.csv_fields
        unknown = self.fmt.extra_column is not None
        plain_rows = dataset.malformed_rate <= 0 and dataset.duplicate_rate <= 0
        if plain_rows and dataset.amend_rate <= 0 and self.fmt.plain:
            lines = self.source.csv_lines(indices)
            copies: tuple[int, ...] = ()
        else:
            lines, repeat = [], []
            for i in indices:
                kind = dataset.malformed_kind(endpoint, i)
                if kind is not None:
                    lines.append(self._broken(i, kind))
                    continue
                older = self.older_copy(i)
                if older is None:
                    lines.append(self._join(fields(i, 0, unknown)))
                else:
                    newer = self._join(fields(i, 1, unknown))
                    first_newer = dataset.config.amend_order == "newer-first"
                    lines.extend((newer, older) if first_newer else (older, newer))
                    continue
                if dataset.duplicated(endpoint, i):
                    repeat.append(i)
            copies = tuple(repeat)
        if not lines:
            return "", copies
        term = self.fmt.terminator
        return term.join(lines) + term, copies

    def _join(self, fields: list[str]) -> str:
        if self.fmt.plain:
            return ",".join(fields)
        return ",".join(self.fmt.arrange(fields, agent_version(fields[0])))

    def _copies(self, indices: list[int]) -> str:
        """The second copies of duplicated rows, possibly with updated values."""
        if not indices:
            return ""
        unknown = self.fmt.extra_column is not None
        fields, bump = self.source.csv_fields, self.dataset.bump
        term = self.fmt.terminator
        return "".join(
            self._join(fields(i, bump(self.endpoint, i), unknown)) + term for i in indices
        )

    def older_copy(self, index: int) -> str | None:
        """The CSV line of an amended row's older copy, or None (not amended, or out of range).

        It has the values from before the amendment (no commit source, the line counts before
        the bump) and an earlier createdAt; the commit timestamp stays the same.
        """
        delay = self.dataset.amended(self.endpoint, index)
        if not delay:
            return None
        created = self.source.timeline.created_ms(index) - delay
        if created < self.start_ms:
            return None
        fields = self.source.csv_fields(index, 0, self.fmt.extra_column is not None)
        fields[CREATED_FIELD[self.endpoint]] = self.dataset.stamps.format(created)
        if len(fields) > SOURCE_FIELD:
            fields[SOURCE_FIELD] = ""
        return self._join(fields)

    def _broken(self, index: int, kind: str) -> str:
        """Row `index` rendered unparseable in the given way; its key stays readable."""
        fields = self.source.csv_fields(index, 0, self.fmt.extra_column is not None)
        return self._break(fields, kind)

    def _break(self, fields: list[str], kind: str) -> str:
        """A row's fields joined into a line that is unparseable in the given way."""
        count = 6 if self.endpoint is Endpoint.COMMITS else 5
        if kind == "count":
            fields[count] = "12x"
        elif kind == "stray_quote":  # a quote inside an unquoted field: the count goes odd
            fields[count] = f'{fields[count]}"7'
        elif kind == "timestamp":
            fields[16 if self.endpoint is Endpoint.COMMITS else 7] = "2025-13-45T25:61:00.000Z"
        elif kind == "metadata":
            text = fields[8][1:-1].replace('""', '"')
            fields[8] = quote(text[: len(text) // 2])
        else:
            fields.append("surplus")
        return self._join(fields)

    def row_line(self, row: Row) -> str:
        """An explicit (test-provided) row as a CSV line."""
        unknown = self.fmt.extra_column is not None
        fields = [
            quote(metadata_json(row.get("files") or [], unknown))
            if column.name == "metadata_json"
            else field(row.get(column.name))
            for column in self.endpoint.columns
            if column.name not in self.fmt.missing
        ]
        kind = self.dataset.edits[self.endpoint].malformed.get(row[self.endpoint.key])
        if kind is not None:
            return self._break(fields, kind) + self.fmt.terminator
        return self._join(fields) + self.fmt.terminator
