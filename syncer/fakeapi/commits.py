"""Generated commit rows: row i from (seed, i) alone, as typed values or as CSV fields.

One seeded bijection turns the row number into 64 random bits; those bits pick entries of
small precomputed tables (who/where, line counts, message, commit delay), so a row costs a
few look-ups and the commit hash maps back to its row number.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any, NamedTuple

from syncer.endpoints import Endpoint
from syncer.fakeapi.csvtext import quote
from syncer.fakeapi.mixing import Permutation
from syncer.fakeapi.population import Population
from syncer.fakeapi.timeline import Timeline
from syncer.fakeapi.timestamps import DAY_MS, TimestampFormatter, from_ms

TABLE_BITS = 12
_TABLE = (1 << TABLE_BITS) - 1
#: `commitSource` values and their weights: the three the docs name, and one they do not yet
COMMIT_SOURCES = (("ide", 70), ("cli", 18), ("cloud", 10), ("web", 2))


class Place(NamedTuple):
    """Who committed where: user, repository, branch; `text` is their CSV fields."""

    user: int
    repo: str | None
    branch: str | None
    primary: bool | None
    absent: bool
    text: str


class Counts(NamedTuple):
    """Line counts of a commit, in CSV column order; `text` is their CSV fields."""

    total_a: int
    total_d: int
    tab_a: int
    tab_d: int
    comp_a: int
    comp_d: int
    non_a: int | None
    non_d: int | None
    text: str


def _place(rng: random.Random, population: Population) -> Place:
    user = rng.choice(population.user_pick)
    person = population.users[user]
    if rng.random() < 0.02:  # no repository info at all
        return Place(user, None, None, None, rng.random() < 0.5, f"{person.encoded_id},"
                     f"{quote(person.email)},,,")  # fmt: skip
    repo = population.repos[rng.choice(population.repo_pick)]
    on_default = rng.random() < 0.6
    branch = repo.default_branch if on_default else rng.choice(repo.feature_branches)
    primary: bool | None = on_default if rng.random() > 0.04 else None
    flag = "" if primary is None else ("true" if primary else "false")
    text = f"{person.encoded_id},{quote(person.email)},{quote(repo.name)},{quote(branch)},{flag}"
    return Place(user, repo.name, branch, primary, rng.random() < 0.5, text)


def _counts(rng: random.Random, bump: int = 0) -> Counts:
    tab_a = int(rng.expovariate(1 / 20)) if rng.random() < 0.8 else 0
    tab_d = int(rng.expovariate(1 / 4)) if tab_a else 0
    comp_a = int(rng.expovariate(1 / 60)) if rng.random() < 0.6 else 0
    comp_d = int(rng.expovariate(1 / 10)) if comp_a else 0
    ai_a, ai_d = tab_a + comp_a, tab_d + comp_d
    if rng.random() < 0.07:  # AI lines rewritten before committing: fewer lines in total
        total_a, total_d = max(0, ai_a - rng.randint(1, 30)), ai_d
    else:
        total_a = ai_a + int(rng.expovariate(1 / 40))
        total_d = ai_d + int(rng.expovariate(1 / 15))
    return _counted(total_a + bump, total_d, tab_a, tab_d, comp_a, comp_d, rng.random() < 0.015)


def _counted(
    total_a: int, total_d: int, tab_a: int, tab_d: int, comp_a: int, comp_d: int, null: bool
) -> Counts:
    ai_a, ai_d = tab_a + comp_a, tab_d + comp_d
    non_a = None if null else max(0, total_a - ai_a)
    non_d = None if null else max(0, total_d - ai_d)
    values = (total_a, total_d, tab_a, tab_d, comp_a, comp_d, non_a, non_d)
    text = ",".join("" if v is None else str(v) for v in values)
    return Counts(*values, text)


class CommitSource:
    """The lazily generated `commits` rows of one data set."""

    endpoint = Endpoint.COMMITS

    def __init__(
        self,
        seed: int,
        population: Population,
        timeline: Timeline,
        stamps: TimestampFormatter,
        commit_source: bool = True,
    ) -> None:
        rng = random.Random(f"fakeapi-commits-{seed}")
        self.population = population
        self.timeline = timeline
        self.stamps = stamps
        self.perm = Permutation(64, seed * 2 + 1)
        size = _TABLE + 1
        self.places = [_place(rng, population) for _ in range(size)]
        self.counts = [_counts(rng) for _ in range(size)]
        self.messages = [population.messages[rng.randrange(1024)] for _ in range(size)]
        #: the last 24 hex digits of a commit hash, by the top 12 bits of the first 16
        self.tails = [f"{rng.getrandbits(96):024x}" for _ in range(size)]
        self.message_fields = ["" if m is None else quote(m) for m in self.messages]
        #: commit_ts = createdAt minus this many ms (None: no commit timestamp)
        self.delays = [
            None if rng.random() < 0.01 else int(rng.expovariate(1 / 600_000)) + 1000
            for _ in range(size)
        ]
        #: whether some null isPrimaryBranch are left out of JSON items (the document's "undefined")
        self.omit_null_primary = False
        #: whether rows carry `commit_source` (False: the first document's rows, without it)
        self.with_source = commit_source
        names = [name for name, _ in COMMIT_SOURCES]
        weights = [weight for _, weight in COMMIT_SOURCES]
        self.commit_sources: list[str | None] = (
            list(rng.choices(names, weights, k=size)) if commit_source else [None] * size
        )
        self.source_fields = [f",{v}" if v else "" for v in self.commit_sources]

    def key(self, index: int) -> str:
        """The commit hash of row `index`."""
        h = self.perm.forward(index)
        return f"{h:016x}{self.tails[h >> 52]}"

    def index_of(self, key: str) -> int | None:
        """The row number a generated commit hash belongs to, or None."""
        try:
            index = self.perm.inverse(int(key[:16], 16))
        except ValueError:
            return None
        return index if len(key) == 40 and self.key(index) == key else None

    def user_of(self, index: int) -> int:
        """The user (population index) of row `index`, cheaply."""
        return self.places[self.perm.forward(index) & _TABLE].user

    def draw(self, index: int, bump: int) -> tuple[str, Place, Counts, int, int | None, int]:
        """Row `index`'s picks: key, place, counts, message, commit_ts ms, created_at ms."""
        h = self.perm.forward(index)
        counts = self.counts[(h >> 12) & _TABLE]
        if bump:
            counts = _counted(counts.total_a + bump, *counts[1:6], counts.non_a is None)
        created = self.timeline.created_ms(index)
        delay = self.delays[(h >> 36) & _TABLE]
        commit_ts = None if delay is None else (created - delay) // 1000 * 1000  # whole seconds
        place, message = self.places[h & _TABLE], (h >> 24) & _TABLE
        return self.key(index), place, counts, message, commit_ts, created

    def csv_fields(self, index: int, bump: int, unknown_key: bool = False) -> list[str]:
        """Row `index` as CSV field texts in documented column order."""
        key, place, counts, message, commit_ts, created = self.draw(index, bump)
        person, stamp = self.population.users[place.user], self.stamps.format
        fields = [
            key, person.encoded_id, quote(person.email), *_place_tail(place),
            *counts.text.split(","),
            "" if place.repo is None else self.message_fields[message],
            "" if commit_ts is None else stamp(commit_ts), stamp(created),
        ]  # fmt: skip
        if self.with_source:
            fields.append(self.commit_sources[(self.perm.forward(index) >> 44) & _TABLE] or "")
        return fields

    def csv_lines(self, indices: Iterable[int]) -> list[str]:
        """Plain CSV lines (no terminator) of untouched rows: `csv_fields` fused for speed.

        The permutation and the timestamp formatting are inlined: this loop feeds the
        million-row benchmark, and a call per field would halve its speed.
        """
        places, counts, delays = self.places, self.counts, self.delays
        messages, tails, timeline, perm = self.message_fields, self.tails, self.timeline, self.perm
        sources = self.source_fields
        mul, add, mask, shift = perm.mul, perm.add, perm.mask, perm.shift
        start, span, count = timeline.start_ms, timeline.span, timeline.count
        jitter = timeline.jitter
        clock, millis, day_prefix = self.stamps.clock, self.stamps.millis, self.stamps.day
        day_start, day_end, prefix = 0, 0, ""
        lines = []
        for index in indices:
            h = (index * mul + add) & mask
            h ^= h >> shift
            h = (h * mul) & mask
            h ^= h >> shift
            if index < count:
                created = start + index * span // count + index * 7919 % jitter
            else:
                created = timeline.created_ms(index)
            if not day_start <= created < day_end:
                day_start = created - created % DAY_MS
                day_end, prefix = day_start + DAY_MS, day_prefix(day_start // DAY_MS)
            rem = created - day_start
            created_text = f"{prefix}{clock[rem // 1000]}{millis[rem % 1000]}"
            delay = delays[(h >> 36) & _TABLE]
            if delay is None:
                commit_text = ""
            elif delay <= rem:
                rem = (rem - delay) // 1000
                commit_text = f"{prefix}{clock[rem]}000Z"
            else:
                commit_text = self.stamps.format((created - delay) // 1000 * 1000)
            place = places[h & _TABLE]
            message = messages[(h >> 24) & _TABLE] if place.repo is not None else ""
            lines.append(
                f"{h:016x}{tails[h >> 52]},{place.text},"
                f"{counts[(h >> 12) & _TABLE].text},{message},"
                f"{commit_text},{created_text}{sources[(h >> 44) & _TABLE]}"
            )
        return lines

    def typed(self, index: int, bump: int) -> dict[str, Any]:
        """Row `index` as the snake_case dict a perfect client would store."""
        key, place, counts, message, commit_ts, created = self.draw(index, bump)
        person = self.population.users[place.user]
        return {
            "commit_hash": key,
            "user_id": person.encoded_id,
            "user_email": person.email,
            "repo_name": place.repo,
            "branch_name": place.branch,
            "is_primary_branch": place.primary,
            "total_lines_added": counts.total_a,
            "total_lines_deleted": counts.total_d,
            "tab_lines_added": counts.tab_a,
            "tab_lines_deleted": counts.tab_d,
            "composer_lines_added": counts.comp_a,
            "composer_lines_deleted": counts.comp_d,
            "non_ai_lines_added": counts.non_a,
            "non_ai_lines_deleted": counts.non_d,
            "message": None if place.repo is None else self.messages[message],
            "commit_ts": None if commit_ts is None else from_ms(commit_ts),
            "created_at": from_ms(created),
            "commit_source": self.commit_sources[(self.perm.forward(index) >> 44) & _TABLE],
        }

    def primary_absent(self, index: int) -> bool:
        """Whether the JSON item leaves out a null isPrimaryBranch ("undefined").

        Never, by default: a recorded response of the real API carries `"isPrimaryBranch": null`.
        """
        place = self.places[self.perm.forward(index) & _TABLE]
        return self.omit_null_primary and place.primary is None and place.absent


def _place_tail(place: Place) -> list[str]:
    """repo_name, branch_name, is_primary_branch as CSV fields."""
    return [
        "" if place.repo is None else quote(place.repo),
        "" if place.branch is None else quote(place.branch),
        "" if place.primary is None else ("true" if place.primary else "false"),
    ]
