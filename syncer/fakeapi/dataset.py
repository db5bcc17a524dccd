"""`Dataset`: the lazily generated rows, test mutations on top, and the ground truth."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from syncer.endpoints import Endpoint, Kind
from syncer.fakeapi.changes import ChangeSource
from syncer.fakeapi.commits import CommitSource
from syncer.fakeapi.config import FakeApiConfig
from syncer.fakeapi.mixing import mix64, unit
from syncer.fakeapi.population import Population, User
from syncer.fakeapi.timeline import Timeline
from syncer.fakeapi.timestamps import TimestampFormatter, from_ms, to_ms
from syncer.timespec import parse_spec

Row = dict[str, Any]
#: a stretch of the served stream: untouched generated rows, or one explicit row
Piece = range | Row
#: first row number used for rows added by tests: far past anything generated
_FRESH_BASE = 1 << 35
#: how a malformed row is broken
MALFORMED_KINDS = ("count", "timestamp", "field_count", "stray_quote", "metadata")


class Source(Protocol):
    """What `Dataset` needs from a per-endpoint row generator."""

    timeline: Timeline

    def key(self, index: int) -> str: ...
    def index_of(self, key: str) -> int | None: ...
    def user_of(self, index: int) -> int: ...
    def csv_fields(self, index: int, bump: int, unknown_key: bool = False) -> list[str]: ...
    def csv_lines(self, indices: Iterable[int]) -> list[str]: ...
    def typed(self, index: int, bump: int) -> Row: ...
    def primary_absent(self, index: int) -> bool: ...


@dataclass
class Edits:
    """Test mutations of one endpoint: rows replaced in place, removed, or added elsewhere."""

    overrides: dict[int, Row] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    extras: dict[str, Row] = field(default_factory=dict)
    added: int = 0
    #: keys of added rows that CSV output renders unparseable, and how (see `add_malformed`)
    malformed: dict[str, str] = field(default_factory=dict)


def privacy_fraction(mode: str) -> float:
    """`off` → 0, `all` → 1, or a fraction of users in privacy mode."""
    value = mode.strip().lower()
    if value in ("off", "none", ""):
        return 0.0
    if value == "all":
        return 1.0
    fraction = float(value)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"privacy mode {mode!r} must be off, all, or a fraction in [0, 1]")
    return fraction


def _moment(value: datetime | str) -> datetime:
    return parse_spec(value) if isinstance(value, str) else value.astimezone(timezone.utc)


def _ceil_ms(moment: datetime) -> int:
    ms = to_ms(moment)
    return ms + 1 if moment.microsecond % 1000 else ms


class Dataset:
    """The rows the simulator serves, generated lazily from the seed, plus test mutations."""

    def __init__(self, config: FakeApiConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.duplicate_rate = config.duplicate_rate
        self.amend_rate = config.amend_rate
        self.malformed_rate = config.malformed_rate
        self.population = Population(config.seed, privacy_fraction(config.privacy_mode))
        anchor = config.anchor
        if anchor is not None and anchor.tzinfo is None:
            anchor = anchor.replace(tzinfo=timezone.utc)
        self.anchor_ms = to_ms(anchor) if anchor else int(clock()) * 1000
        start_ms = self.anchor_ms - int(config.days * 86_400_000)
        self.stamps = TimestampFormatter()
        seed = config.seed
        self.sources: dict[Endpoint, Source] = {
            Endpoint.COMMITS: CommitSource(
                seed, self.population,
                Timeline(config.commits, start_ms, self.anchor_ms, config.live_rate), self.stamps,
                config.commit_source,
            ),
            Endpoint.CHANGES: ChangeSource(
                seed, self.population,
                Timeline(config.changes, start_ms, self.anchor_ms, config.live_rate), self.stamps,
                config.new_source_rate,
            ),
        }  # fmt: skip
        self.edits = {endpoint: Edits() for endpoint in Endpoint}
        self._dup_salt = mix64(seed * 8 + 5)
        self._bad_salt = mix64(seed * 8 + 6)
        self._amend_salt = mix64(seed * 8 + 7)

    @property
    def anchor(self) -> datetime:
        """The end of the generated history (live rows continue after it)."""
        return from_ms(self.anchor_ms)

    def served_columns(self, endpoint: Endpoint) -> list[str]:
        """The columns this data set serves, in documented order (`commit_source` may be off)."""
        names = [column.name for column in endpoint.columns]
        return names if self.config.commit_source else [n for n in names if n != "commit_source"]

    @property
    def users(self) -> list[User]:
        """The team's users."""
        return self.population.users

    def now_ms(self) -> int:
        """Wall-clock now in epoch milliseconds: later rows are not visible yet."""
        return int(self.clock() * 1000)

    # --- per-row flags -------------------------------------------------------------------

    def malformed_kind(self, endpoint: Endpoint, index: int) -> str | None:
        """How generated row `index` is broken in CSV output, or None when it is sound."""
        if self.malformed_rate <= 0:
            return None
        salted = (index ^ self._bad_salt) + (endpoint is Endpoint.CHANGES)
        if unit(salted) >= self.malformed_rate:
            return None
        kinds = len(MALFORMED_KINDS) - (endpoint is not Endpoint.CHANGES)  # commits: no metadata
        return MALFORMED_KINDS[mix64(salted) % kinds]

    def duplicated(self, endpoint: Endpoint, index: int) -> bool:
        """Whether generated row `index` is served twice in a CSV stream."""
        if self.duplicate_rate <= 0:
            return False
        salted = (index ^ self._dup_salt) + (endpoint is Endpoint.CHANGES)
        return unit(salted) < self.duplicate_rate and self.malformed_kind(endpoint, index) is None

    def amended(self, endpoint: Endpoint, index: int) -> int:
        """Milliseconds between the older copy of an amended row and the amended one, or 0.

        An amended row is served twice: the amended copy (the truth, at the row's createdAt,
        with updated values) and an older copy, createdAt this much earlier (when in range).
        """
        if self.amend_rate <= 0 or self.malformed_kind(endpoint, index) is not None:
            return 0
        salted = (index ^ self._amend_salt) + (endpoint is Endpoint.CHANGES)
        if unit(salted) >= self.amend_rate:
            return 0
        return 1000 + mix64(salted) % 3_600_000

    def bump(self, endpoint: Endpoint, index: int) -> int:
        """1 when the row's last served copy (or its amended one) carries updated values."""
        if self.amended(endpoint, index):
            return 1
        if not self.duplicated(endpoint, index):
            return 0
        return (mix64(index ^ self._dup_salt) >> 7) & 1

    # --- windows -------------------------------------------------------------------------

    def find_user(self, text: str) -> User | None:
        """Resolve the `user` parameter: email, encoded id (`user_…`) or numeric id."""
        value = text.strip()
        for person in self.population.users:
            if value.lower() == person.email.lower() or value == person.encoded_id:
                return person
            if value.isdigit() and int(value) == person.numeric_id:
                return person
        return None

    def pieces(self, endpoint: Endpoint, start: datetime, end: datetime) -> list[Piece]:
        """The window's rows in ascending createdAt order: index ranges and explicit rows."""
        source, edits = self.sources[endpoint], self.edits[endpoint]
        start_ms, end_ms = _ceil_ms(start), min(to_ms(end), self.now_ms())
        if end_ms < start_ms:
            return []
        lo = source.timeline.first_at_or_after(start_ms)
        hi = source.timeline.first_at_or_after(end_ms + 1)
        points: list[tuple[int, int, Any]] = [
            (index, 1, index) for index in (*edits.overrides, *edits.deleted) if lo <= index < hi
        ]
        for row in edits.extras.values():
            ms = to_ms(row["created_at"])
            if start_ms <= ms <= end_ms:
                points.append((source.timeline.first_at_or_after(ms + 1), 0, row))
        # an added row goes before the generated row at its position, after older added rows
        points.sort(key=lambda point: (point[0], point[1], _created_ms(point[2])))
        pieces: list[Piece] = []
        cursor = lo
        for position, is_generated, item in points:
            if position > cursor:
                pieces.append(range(cursor, position))
                cursor = position
            if not is_generated:
                pieces.append(item)
            elif item in edits.overrides:
                pieces.append(edits.overrides[item])
                cursor = item + 1
            else:
                cursor = item + 1
        if hi > cursor:
            pieces.append(range(cursor, hi))
        return pieces

    def rows(
        self, endpoint: Endpoint, start: datetime | str, end: datetime | str, user: str | None
    ) -> Iterator[tuple[int | None, Row | None]]:
        """(index, None) for generated rows and (None, row) for explicit ones, filtered by user."""
        person = self.find_user(user) if user is not None else None
        if user is not None and person is None:
            return
        source = self.sources[endpoint]
        wanted = None if person is None else self.population.users.index(person)
        for piece in self.pieces(endpoint, _moment(start), _moment(end)):
            if isinstance(piece, range):
                for index in piece:
                    if wanted is None or source.user_of(index) == wanted:
                        yield index, None
            elif person is None or piece.get("user_id") == person.encoded_id:
                yield None, piece

    def truth(
        self,
        endpoint: Endpoint,
        start: datetime | str,
        end: datetime | str,
        user: str | None = None,
    ) -> list[Row]:
        """What a perfect client ends with for this window, ascending createdAt.

        Reflects mutations, privacy mode and duplicates (last copy wins); leaves out the
        rows served malformed (see `malformed_keys`).
        """
        source = self.sources[endpoint]
        rows: list[Row] = []
        broken = self.edits[endpoint].malformed
        for index, row in self.rows(endpoint, start, end, user):
            if row is not None:
                if row[endpoint.key] not in broken:
                    rows.append(_copy(row))
            elif index is not None and self.malformed_kind(endpoint, index) is None:
                rows.append(source.typed(index, self.bump(endpoint, index)))
        return rows

    def malformed_keys(
        self,
        endpoint: Endpoint,
        start: datetime | str,
        end: datetime | str,
        user: str | None = None,
        kind: str | None = None,
    ) -> set[str]:
        """Keys of the rows in this window that CSV output renders unparseable (in one way)."""
        broken = self.edits[endpoint].malformed
        if self.malformed_rate <= 0 and not broken:
            return set()
        source = self.sources[endpoint]
        keys = set()
        for index, row in self.rows(endpoint, start, end, user):
            if row is not None:
                found = broken.get(row[endpoint.key])
            elif index is not None:
                found = self.malformed_kind(endpoint, index)
            if found is not None and (kind is None or found == kind):
                keys.add(row[endpoint.key] if row is not None else source.key(index or 0))
        return keys

    # --- mutations -----------------------------------------------------------------------

    def get(self, endpoint: Endpoint, key: str) -> Row | None:
        """The current truth of one row by key (generated, replaced or added), or None."""
        edits = self.edits[endpoint]
        if key in edits.extras:
            return _copy(edits.extras[key])
        index = self._generated_index(endpoint, key)
        if index is None or index in edits.deleted:
            return None
        if index in edits.overrides:
            return _copy(edits.overrides[index])
        return self.sources[endpoint].typed(index, self.bump(endpoint, index))

    def add(self, endpoint: Endpoint, **fields: Any) -> Row:
        """Add a new row (a plausible generated one, overridden by `fields`); returns it.

        `created_at` defaults to now; give an old one to make a late-arriving row.
        """
        edits = self.edits[endpoint]
        source = self.sources[endpoint]
        row = source.typed(_FRESH_BASE + edits.added, 0)
        edits.added += 1
        row["created_at"] = from_ms(self.now_ms())
        row.update(fields)
        key = row[endpoint.key]
        if self.get(endpoint, key) is not None:
            raise ValueError(f"{endpoint.key} {key!r} already exists; use update()")
        row = _as_served(endpoint, row)
        edits.extras[key] = row
        return _copy(row)

    def add_malformed(self, endpoint: Endpoint, kind: str = "count", **fields: Any) -> str:
        """Add a new row that CSV output renders unparseable in the way `kind` names (one of
        `MALFORMED_KINDS`; commits have no metadata); returns its key.

        Its key stays readable, so a client can quarantine it; `truth` leaves it out and
        `malformed_keys` lists it.
        """
        if kind not in MALFORMED_KINDS or (kind == "metadata" and endpoint is Endpoint.COMMITS):
            raise ValueError(f"no malformed kind {kind!r} for {endpoint.value}")
        key: str = self.add(endpoint, **fields)[endpoint.key]
        self.edits[endpoint].malformed[key] = kind
        return key

    def update(self, endpoint: Endpoint, key: str, **fields: Any) -> Row:
        """Re-serve an existing row with some fields changed; returns the new truth."""
        current = self.get(endpoint, key)
        if current is None:
            raise KeyError(f"no {endpoint.value} row with {endpoint.key} {key!r}")
        row = _as_served(endpoint, {**current, **fields, endpoint.key: key})
        edits = self.edits[endpoint]
        index = None if key in edits.extras else self._generated_index(endpoint, key)
        moved = row["created_at"] != current["created_at"]
        if index is not None and not moved:
            edits.overrides[index] = row
        else:
            if index is not None:
                edits.deleted.add(index)
                edits.overrides.pop(index, None)
            edits.extras[key] = row
        return _copy(row)

    def remove(self, endpoint: Endpoint, key: str) -> None:
        """Stop serving a row."""
        edits = self.edits[endpoint]
        if edits.extras.pop(key, None) is not None:
            return
        index = self._generated_index(endpoint, key)
        if index is None:
            raise KeyError(f"no {endpoint.value} row with {endpoint.key} {key!r}")
        edits.overrides.pop(index, None)
        edits.deleted.add(index)

    def _generated_index(self, endpoint: Endpoint, key: str) -> int | None:
        source = self.sources[endpoint]
        index = source.index_of(key)
        if index is None or index >= _FRESH_BASE:
            return None
        return index if source.timeline.visible(index, self.now_ms()) else None


def _created_ms(item: Any) -> int:
    return to_ms(item["created_at"]) if isinstance(item, dict) else 0


def _as_served(endpoint: Endpoint, row: Row) -> Row:
    """A row as the CSV carries it: UTC millisecond timestamps, empty text as None."""
    out = dict(row)
    for column in endpoint.columns:
        value = out.get(column.name)
        if column.kind is Kind.TIMESTAMP and value is not None:
            out[column.name] = from_ms(to_ms(_moment(value)))
        elif column.kind is Kind.TEXT and value == "":
            out[column.name] = None
    return out


def _copy(row: Row) -> Row:
    copied = dict(row)
    if "files" in copied and copied["files"] is not None:
        copied["files"] = [dict(entry) for entry in copied["files"]]
    return copied
