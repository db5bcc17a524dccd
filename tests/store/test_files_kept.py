"""A change re-served with other columns changed but the same files keeps its file rows as
they are (no delete and re-insert); a change whose files changed gets them replaced. Both
paths."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

import syncer.store.writer
from syncer.commands import sync_command
from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi
from syncer.store.db import to_libpq_url
from tests.test_sync import last_runs, settings_for, sim_config
from tests.truth import assert_equals_truth

from .test_rawpath import THREE_FILES, typed_only

FILES_OF = "SELECT ctid::text FROM ai_code_change_files WHERE change_id = $1 ORDER BY file_index"


@pytest.mark.parametrize("path", ["raw", "typed"])
async def test_file_rows_are_rewritten_only_when_the_files_change(
    path: str, clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw_blocks = 0
    prepare_raw = syncer.store.writer.prepare_raw

    async def counting(*args: Any) -> None:
        nonlocal raw_blocks
        raw_blocks += 1
        await prepare_raw(*args)

    monkeypatch.setattr(syncer.store.writer, "prepare_raw", counting)
    if path == "typed":
        typed_only(monkeypatch)
    async with FakeApi(sim_config()) as sim:
        settings = settings_for(sim, clean_db, SYNC_BATCH_ROWS=100)
        sim.dataset.add(Endpoint.CHANGES, change_id="recent", files=THREE_FILES)
        assert await sync_command(settings) == 0
        conn = await asyncpg.connect(to_libpq_url(clean_db))
        try:
            before = await conn.fetch(FILES_OF, "recent")
            assert len(before) == 3

            sim.dataset.update(Endpoint.CHANGES, "recent", model="another-model")
            assert await sync_command(settings) == 0
            await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)
            runs = await last_runs(clean_db)
            changes = [r for r in runs if r["endpoint"] == "changes"][-1]
            assert changes["rows_updated"] == 1
            assert await conn.fetch(FILES_OF, "recent") == before, "files kept as they were"

            sim.dataset.update(Endpoint.CHANGES, "recent", files=THREE_FILES[1:])
            assert await sync_command(settings) == 0
            await assert_equals_truth(clean_db, sim, Endpoint.CHANGES)
            after = await conn.fetch(FILES_OF, "recent")
            assert len(after) == 2
        finally:
            await conn.close()
    assert (raw_blocks > 0) == (path == "raw")
