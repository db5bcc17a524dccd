"""The ordered two-lane writer, on a fake connection writer: batches commit in stream order
whichever lane is ready first, the final batch commits last and carries the mark, a failure
surfaces, and aborting rolls back what is in flight. Plus the mark rule's pure helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import pytest

from syncer.endpoints import Endpoint
from syncer.errors import DatabaseError
from syncer.parse.blocks import RawBlock
from syncer.results import BatchCounts
from syncer.store.batch import Batch, RawBatch
from syncer.store.mark import Turn, later, may_advance, new_mark
from syncer.store.ordered import OrderedWriter

T0 = datetime(2025, 7, 30, 14, 0, tzinfo=timezone.utc)
E = Endpoint.COMMITS


def batch(name: str, minutes: int | None) -> Batch:
    """A batch known by its one key, whose newest created_at is T0 + `minutes`."""
    newest = None if minutes is None else T0 + timedelta(minutes=minutes)
    return Batch(E, {name: (name,)}, newest=newest)


def raw(name: str, minutes: int) -> RawBatch:
    """A raw block; the fake learns its newest created_at from its data, as the server does."""
    return RawBatch(
        E, ["commit_hash"], RawBlock(b"h\n", ("h",), f"{name},{minutes}".encode(), True)
    )


class FakeConnection:
    """Stands for `BatchWriter`: prepares, waits for its turn, 'commits' (records it)."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def write(self, batch: Batch, *, run_id: str, turn: Turn) -> BatchCounts:
        (name,) = batch.rows
        await self._transaction(name, batch.newest, turn)
        return BatchCounts(inserted=1)

    async def write_raw(
        self, raw: RawBatch, *, run_id: str, turn: Turn
    ) -> tuple[BatchCounts, datetime | None]:
        name, minutes = raw.block.data.decode().split(",")
        newest = T0 + timedelta(minutes=int(minutes))
        await self._transaction(name, newest, turn)
        return BatchCounts(updated=1), newest

    async def _transaction(self, name: str, newest: datetime | None, turn: Turn) -> None:
        world = self.world
        try:
            if name in world.held:  # staging this block takes a while
                await world.held[name].wait()
            world.waiting(name).set()
            so_far = await turn.wait()
            if name in world.failing:
                raise DatabaseError(f"{name} failed")
            world.commits.append((name, new_mark(so_far, newest, advance=turn.advance)))
        except BaseException:
            world.rolled_back.append(name)
            raise


class World:
    """What the fake connections did."""

    def __init__(self, *, held: tuple[str, ...] = (), failing: tuple[str, ...] = ()) -> None:
        self.held = {name: asyncio.Event() for name in held}
        self.failing = set(failing)
        self._waiting: dict[str, asyncio.Event] = {}
        self.commits: list[tuple[str, datetime | None]] = []
        self.rolled_back: list[str] = []
        self.opened = self.closed = 0
        self.reported: list[BatchCounts] = []

    def waiting(self, name: str) -> asyncio.Event:
        return self._waiting.setdefault(name, asyncio.Event())

    @asynccontextmanager
    async def open(self) -> AsyncIterator[FakeConnection]:
        self.opened += 1
        try:
            yield FakeConnection(self)
        finally:
            self.closed += 1

    def writer(self) -> OrderedWriter:
        return OrderedWriter(
            self.open, "run", lambda endpoint, counts: self.reported.append(counts)
        )


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_commits_follow_stream_order_when_the_second_lane_is_ready_first() -> None:
    world = World(held=("b1",))
    writer = world.writer()
    try:
        await writer.put(batch("b1", 1))
        await writer.put(batch("b2", 2))
        await asyncio.wait_for(world.waiting("b2").wait(), 5)
        await settle()
        assert not world.waiting("b1").is_set(), "b1 is still staging"
        assert world.commits == [], "b2 is ready first but must wait for b1 to commit"
        world.held["b1"].set()
        counts = await writer.finish(batch("final", None), advance=True)
    finally:
        await writer.abort()
    assert [name for name, _ in world.commits] == ["b1", "b2", "final"]
    assert counts == BatchCounts(inserted=3)
    assert world.reported == [BatchCounts(inserted=1)] * 3
    assert world.opened == world.closed == 2


async def test_a_window_of_one_batch_opens_one_connection() -> None:
    world = World()
    writer = world.writer()
    try:
        counts = await writer.finish(batch("only", 1), advance=True)
    finally:
        await writer.abort()
    assert world.commits == [("only", T0 + timedelta(minutes=1))]
    assert counts == BatchCounts(inserted=1)
    assert world.opened == world.closed == 1, "the second lane opens with a second batch"


@pytest.mark.parametrize("advance", [True, False])
async def test_the_final_batch_commits_last_with_the_windows_newest_as_mark(advance: bool) -> None:
    world = World(held=("b1",))
    writer = world.writer()
    try:
        await writer.put(batch("b1", 3))  # held: the later batches are ready before it
        await writer.put(raw("b2", 7))  # the raw path learns its newest from the server
        put_b3 = asyncio.create_task(writer.put(batch("b3", 5)))
        await settle()
        world.held["b1"].set()
        await put_b3
        counts = await writer.finish(batch("final", 4), advance=advance)
    finally:
        await writer.abort()
    mark = T0 + timedelta(minutes=7) if advance else None
    assert world.commits == [("b1", None), ("b2", None), ("b3", None), ("final", mark)]
    assert counts == BatchCounts(inserted=3, updated=1)


async def test_a_write_failure_surfaces_and_nothing_after_it_commits() -> None:
    world = World(held=("b1",), failing=("b2",))
    writer = world.writer()

    async def stream() -> None:
        try:
            await writer.put(batch("b1", 1))
            await writer.put(batch("b2", 2))
            world.held["b1"].set()
            for n in range(3, 10):
                await writer.put(batch(f"b{n}", n))
            await writer.finish(batch("final", None), advance=True)
        finally:
            await writer.abort()

    with pytest.raises(DatabaseError, match="b2 failed"):
        await stream()
    assert world.commits == [("b1", None)], "no later batch, and no mark"
    assert "b2" in world.rolled_back
    assert world.opened == world.closed == 2


async def test_abort_rolls_back_the_batches_in_flight() -> None:
    world = World(held=("b1",))
    writer = world.writer()
    await writer.put(batch("b1", 1))
    await writer.put(batch("b2", 2))
    await asyncio.wait_for(world.waiting("b2").wait(), 5)
    await writer.abort()
    assert world.commits == []
    assert sorted(world.rolled_back) == ["b1", "b2"]
    assert world.opened == world.closed == 2


def test_new_mark_is_the_windows_newest_only_for_the_batch_that_carries_it() -> None:
    t1, t2 = T0, T0 + timedelta(seconds=1)
    assert new_mark(t1, t2, advance=True) == t2
    assert new_mark(t2, t1, advance=True) == t2
    assert new_mark(None, t1, advance=True) == t1
    assert new_mark(t1, None, advance=True) == t1
    assert new_mark(None, None, advance=True) is None
    assert new_mark(t1, t2, advance=False) is None
    assert later(None, None) is None


def test_a_pass_starting_after_the_stored_mark_does_not_move_it() -> None:
    assert may_advance(None, T0)
    assert may_advance(T0, T0)
    assert may_advance(T0, T0 - timedelta(days=1))
    assert not may_advance(T0, T0 + timedelta(seconds=1))
