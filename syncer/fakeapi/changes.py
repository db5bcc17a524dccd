"""Generated AI-change rows: row i from (seed, i) alone, as typed values or as CSV fields.

The change id is a seeded bijection of the row number; its bits pick the user and a
"shape" (source, model, files with line counts) from a small precomputed table.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from syncer.endpoints import Endpoint
from syncer.fakeapi.csvtext import metadata_json, quote
from syncer.fakeapi.mixing import Permutation
from syncer.fakeapi.population import (
    COMPOSER_MODELS,
    OTHER_SOURCES,
    TAB_MODELS,
    Population,
)
from syncer.fakeapi.timeline import Timeline
from syncer.fakeapi.timestamps import DAY_MS, TimestampFormatter, from_ms

KEY_BITS = 36
_SHAPE_BITS = 12
_SHAPES = (1 << _SHAPE_BITS) - 1


class Shape:
    """What a change did: source, model and files; with its CSV texts."""

    def __init__(
        self, source: str, model: str | None, files: tuple[tuple[str, str, int, int], ...]
    ) -> None:
        self.source = source
        self.model = model
        self.files = files  # (file name, extension, lines added, lines deleted)
        self.total_a = sum(f[2] for f in files)
        self.total_d = sum(f[3] for f in files)
        self.head = f"{source},{quote(model or '')},{self.total_a},{self.total_d}"
        self._metadata: dict[tuple[bool, bool], str] = {}

    def entries(self, private: bool) -> list[dict[str, Any]]:
        """The file entries as snake_case dicts (file_name None under privacy mode)."""
        return [
            {"file_name": None if private else name, "file_extension": extension,
             "lines_added": added, "lines_deleted": deleted}
            for name, extension, added, deleted in self.files
        ]  # fmt: skip

    def metadata(self, private: bool, unknown_key: bool = False) -> str:
        """The quoted `metadata_json` CSV field."""
        text = self._metadata.get((private, unknown_key))
        if text is None:
            text = quote(metadata_json(self.entries(private), unknown_key))
            self._metadata[private, unknown_key] = text
        return text

    def bumped(self, bump: int) -> Shape:
        """The same change re-served with `bump` more lines added to its last file."""
        *rest, (name, extension, added, deleted) = self.files
        return Shape(self.source, self.model, (*rest, (name, extension, added + bump, deleted)))


def _shape(rng: random.Random, population: Population, new_source_rate: float) -> Shape:
    roll = rng.random()
    if roll < 0.6:
        source, model = "TAB", rng.choice(TAB_MODELS)
        count = 1 if rng.random() < 0.9 else 2
    else:
        new = roll >= 1 - new_source_rate  # a source the doc does not list (yet)
        source = rng.choice(OTHER_SOURCES) if new else "COMPOSER"
        model = rng.choice(COMPOSER_MODELS)
        count = rng.choice((1, 1, 2, 2, 3, 4, 5))
    files = []
    for file in rng.sample(population.files, count):
        if source == "TAB":
            added, deleted = rng.randint(1, 8), rng.choice((0, 0, 0, 1, 2))
        else:
            added, deleted = int(rng.expovariate(1 / 25)), int(rng.expovariate(1 / 6))
        files.append((file.name, file.extension, added, deleted))
    return Shape(source, model, tuple(files))


class ChangeSource:
    """The lazily generated `changes` rows of one data set."""

    endpoint = Endpoint.CHANGES

    def __init__(
        self,
        seed: int,
        population: Population,
        timeline: Timeline,
        stamps: TimestampFormatter,
        new_source_rate: float = 0.0,
    ) -> None:
        rng = random.Random(f"fakeapi-changes-{seed}")
        self.population = population
        self.timeline = timeline
        self.stamps = stamps
        self.perm = Permutation(KEY_BITS, seed * 2 + 2)
        self.shapes = [_shape(rng, population, new_source_rate) for _ in range(_SHAPES + 1)]
        self.user_fields = [f"{u.encoded_id},{quote(u.email)}" for u in population.users]
        self.private = [u.private for u in population.users]

    def key(self, index: int) -> str:
        """The change id of row `index`."""
        return str(self.perm.forward(index))

    def index_of(self, key: str) -> int | None:
        """The row number a generated change id belongs to, or None."""
        if not key.isdigit() or int(key) >> KEY_BITS:
            return None
        return self.perm.inverse(int(key))

    def user_of(self, index: int) -> int:
        """The user (population index) of row `index`, cheaply."""
        return self.population.user_pick[self.perm.forward(index) & 255]

    def draw(self, index: int, bump: int) -> tuple[str, int, Shape, int]:
        """Row `index`'s picks: key, user, shape, created_at ms."""
        k = self.perm.forward(index)
        shape = self.shapes[(k >> 8) & _SHAPES]
        if bump:
            shape = shape.bumped(bump)
        user = self.population.user_pick[k & 255]
        return str(k), user, shape, self.timeline.created_ms(index)

    def csv_fields(self, index: int, bump: int, unknown_key: bool = False) -> list[str]:
        """Row `index` as CSV field texts in documented column order."""
        key, user, shape, created = self.draw(index, bump)
        person = self.population.users[user]
        return [
            key, person.encoded_id, quote(person.email), shape.source, quote(shape.model or ""),
            str(shape.total_a), str(shape.total_d), self.stamps.format(created),
            shape.metadata(person.private, unknown_key),
        ]  # fmt: skip

    def csv_lines(self, indices: Iterable[int]) -> list[str]:
        """Plain CSV lines (no terminator) of untouched rows: `csv_fields` fused for speed."""
        forward, timeline, shapes = self.perm.forward, self.timeline, self.shapes
        pick, users, private = self.population.user_pick, self.user_fields, self.private
        clock, millis, day_prefix = self.stamps.clock, self.stamps.millis, self.stamps.day
        start, span, count = timeline.start_ms, timeline.span, timeline.count
        jitter = timeline.jitter
        day_start, day_end, prefix = 0, 0, ""
        lines = []
        for index in indices:
            k = forward(index)
            user = pick[k & 255]
            shape = shapes[(k >> 8) & _SHAPES]
            if index < count:
                created = start + index * span // count + index * 7919 % jitter
            else:
                created = timeline.created_ms(index)
            if not day_start <= created < day_end:
                day_start = created - created % DAY_MS
                day_end, prefix = day_start + DAY_MS, day_prefix(day_start // DAY_MS)
            rem = created - day_start
            lines.append(
                f"{k},{users[user]},{shape.head},{prefix}{clock[rem // 1000]}{millis[rem % 1000]},"
                f"{shape.metadata(private[user])}"
            )
        return lines

    def typed(self, index: int, bump: int) -> dict[str, Any]:
        """Row `index` as the snake_case dict a perfect client would store."""
        key, user, shape, created = self.draw(index, bump)
        person = self.population.users[user]
        return {
            "change_id": key,
            "user_id": person.encoded_id,
            "user_email": person.email,
            "source": shape.source,
            "model": shape.model,
            "total_lines_added": shape.total_a,
            "total_lines_deleted": shape.total_d,
            "created_at": from_ms(created),
            "files": shape.entries(person.private),
        }

    def primary_absent(self, index: int) -> bool:
        """Changes have no isPrimaryBranch."""
        return False
