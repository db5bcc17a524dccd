"""Shared by the store tests: raw blocks written the raw way or the typed way."""

from __future__ import annotations

import asyncio
from datetime import datetime

from structlog.testing import capture_logs

from syncer.endpoints import Endpoint
from syncer.parse.blocks import raw_columns
from syncer.results import BatchCounts
from syncer.store.batch import Batch, RawBatch
from syncer.store.mark import Turn
from syncer.store.store import Store
from syncer.store.writer import BatchWriter
from tests.csvpath import raw_block

COMMITS = "commit_hash,message,created_at"
CHANGES = "change_id,model,created_at,metadata_json"


def raw_batch(endpoint: Endpoint, header: str, records: list[str]) -> RawBatch:
    """One block of `records` under `header`, for the raw path."""
    block = raw_block(header, "".join(record + "\n" for record in records).encode())
    columns = raw_columns(endpoint, block.names)
    assert columns is not None
    assert block.plain
    return RawBatch(endpoint, columns, block)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def files(*names: str) -> str:
    entries = ",".join(f'{{""fileName"":""{n}"",""linesAdded"":1}}' for n in names)
    return f'"[{entries}]"'


async def write(
    store: Store, endpoint: Endpoint, header: str, records: list[str], path: str
) -> BatchCounts:
    """One block on a writer of its own, the raw way or the typed way; moves the mark."""
    raw = raw_batch(endpoint, header, records)
    turn = Turn(advance=True)
    async with BatchWriter.open(store) as writer:
        if path == "typed":
            return await writer.write(Batch.parse(endpoint, raw.block), run_id="r", turn=turn)
        with capture_logs() as logs:
            counts, _ = await writer.write_raw(raw, run_id="r", turn=turn)
        assert not [e for e in logs if e["event"] == "raw_block_read_typed"], "took the raw path"
        return counts


async def overtaken(store: Store, first: RawBatch, second: RawBatch) -> None:
    """Write two blocks on two writers, as a window's two lanes do at their worst: `second`
    is staged (it looks up the stored rows) while `first`, staged earlier, waits for its turn;
    then `first` commits, then `second` is applied."""
    second_staged, first_done = asyncio.Event(), asyncio.Event()

    async def after_second_staged() -> datetime | None:
        await second_staged.wait()
        return None

    async def after_first() -> datetime | None:
        second_staged.set()
        await first_done.wait()
        return None

    async def lane(batch: RawBatch, turn: Turn, done: asyncio.Event | None) -> None:
        async with BatchWriter.open(store) as writer:
            await writer.write_raw(batch, run_id="r", turn=turn)
        if done is not None:
            done.set()

    await asyncio.wait_for(
        asyncio.gather(
            lane(first, Turn(after_second_staged), first_done),
            lane(second, Turn(after_first), None),
        ),
        30,
    )
