"""A database that stops taking writes (a read-only database, a demoted primary, a full disk):
every pass fails with one clear line, the daemon stays up and unhealthy, and it heals by itself,
losing nothing, once writes work again."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from syncer.endpoints import Endpoint
from syncer.fakeapi import FakeApi
from syncer.store.db import to_libpq_url
from tests.daemon.support import Daemon, eventually, free_port, simulator
from tests.truth import assert_equals_truth

pytestmark = pytest.mark.slow


def _admin_url(url: str) -> str:
    return to_libpq_url(url).rsplit("/", 1)[0] + "/postgres"


async def _on_admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(_admin_url(url))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _name(url: str) -> str:
    return to_libpq_url(url).rsplit("/", 1)[1].partition("?")[0]


async def make_read_only(url: str) -> None:
    """Make the database refuse writes, as a failover to a standby does: sessions are cut,
    and every one opened next is read-only."""
    name = _name(url)
    await _on_admin(
        url,
        f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
    )


async def make_writable(url: str) -> None:
    """Take writes again, without cutting sessions: open ones stay read-only (PostgreSQL
    applies the setting at a session's start), so the daemon must reconnect by itself."""
    await _on_admin(url, f'ALTER DATABASE "{_name(url)}" RESET default_transaction_read_only')


@pytest.fixture
async def fresh_db(new_database: Callable[[], Awaitable[str]]) -> str:
    """An empty database of the test's own (its settings are changed)."""
    return await new_database()


def add_rows(sim: FakeApi, count: int) -> None:
    """New rows on both endpoints, created now: they must land once writes work again."""
    for _ in range(count):
        for endpoint in Endpoint:
            sim.dataset.add(endpoint)


async def _failed_with(daemon: Daemon, kind: str) -> dict[str, Any] | None:
    """The /healthz body once every endpoint's last pass failed on `kind`."""
    answer = await daemon.healthz()
    if not answer or answer[0] != 503:
        return None
    states = answer[1]["endpoints"].values()
    done = all(s["last_outcome"] == "failed" and kind in (s["last_error"] or "") for s in states)
    return answer[1] if done else None


def _assert_one_clear_line(daemon: Daemon, kind: str, words: tuple[str, ...]) -> None:
    """Each pass that failed on `kind` left one warning naming it and what to do; no traceback.

    (A pass cut by the failover itself fails as any lost connection does.)"""
    retries = [e for e in daemon.events("pass_will_retry") if kind in e["error"]]
    assert retries, daemon.log_text()
    for event in retries:
        assert all(word in event["hint"] for word in words), event
    assert "Traceback" not in daemon.log_text()
    assert not daemon.events("pass_crashed")


async def test_a_read_only_database_fails_every_pass_clearly_and_heals_by_itself(
    daemons: Callable[..., Awaitable[Daemon]], fresh_db: str
) -> None:
    async with simulator() as sim:
        daemon = await daemons(sim.url, fresh_db)
        await daemon.wait_healthy(True)

        await make_read_only(fresh_db)
        add_rows(sim, 5)
        await eventually(
            lambda: _failed_with(daemon, "read-only"), 30, f"read-only passes\n{daemon.log_text()}"
        )
        # no retry storm: a pass that cannot write asks the API for nothing
        requests = sim.stats.count()
        failed = len(daemon.events("pass_will_retry"))
        await eventually(lambda: _more_failures(daemon, failed + 2), 30, "two more failed passes")
        assert sim.stats.count() == requests
        assert daemon.process.returncode is None

        await make_writable(fresh_db)
        await daemon.wait_healthy(True)
        code, _ = await daemon.stop()
        assert code == 0
        for endpoint in Endpoint:
            await assert_equals_truth(fresh_db, sim, endpoint)

    _assert_one_clear_line(daemon, "read-only", ("read-only", "DATABASE_URL", "primary"))
    assert daemon.events("endpoint_recovered")


async def _more_failures(daemon: Daemon, count: int) -> bool:
    return len(daemon.events("pass_will_retry")) >= count


# --- a full disk -------------------------------------------------------------------------


class SmallDisk:
    """A tmpfs of a few MB mounted for a tablespace, filled and emptied on demand."""

    def __init__(self, path: Path, megabytes: int) -> None:
        self.path = path
        self.megabytes = megabytes
        self.filler = path / "filler"

    def mount(self, owner: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.megabytes}m", "tmpfs", str(self.path)],
            check=True, capture_output=True,
        )  # fmt: skip
        shutil.chown(self.path, owner, owner)

    def fill(self) -> None:
        """Take every free byte (root ignores no reserve on tmpfs)."""
        with self.filler.open("wb") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass

    def empty(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


def _can_mount() -> bool:
    import os

    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
async def small_disk_database(tmp_path: Path) -> AsyncIterator[tuple[str, SmallDisk]]:
    """An embedded PostgreSQL whose test database lives on a 48 MB tmpfs tablespace."""
    if not _can_mount():
        pytest.skip("needs root and mount(8) to make a small filesystem")
    embedded = pytest.importorskip("syncer.store.embedded")
    pg = embedded.EmbeddedPostgres(tmp_path / "pg", port=free_port())
    await asyncio.to_thread(pg.start)
    disk = SmallDisk(tmp_path / "small", 48)
    try:
        try:
            disk.mount(pg._user or "root")
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot mount a tmpfs here: {exc.stderr.decode().strip()}")
        await _on_admin(
            pg.url(),
            f"CREATE TABLESPACE small LOCATION '{disk.path}'",
            "CREATE DATABASE on_small TABLESPACE small",
        )
        yield pg.url("on_small"), disk
    finally:
        await asyncio.to_thread(pg.stop)
        disk.unmount()


async def test_a_full_disk_fails_every_pass_clearly_and_heals_when_space_is_freed(
    daemons: Callable[..., Awaitable[Daemon]], small_disk_database: tuple[str, SmallDisk]
) -> None:
    url, disk = small_disk_database
    async with simulator(commits=2000, changes=2000) as sim:
        daemon = await daemons(sim.url, url)
        await daemon.wait_healthy(True)

        disk.fill()
        add_rows(sim, 400)  # enough to need new pages in every table
        await eventually(
            lambda: _failed_with(daemon, "disk"), 60, f"disk-full passes\n{daemon.log_text()}"
        )
        assert daemon.process.returncode is None

        disk.empty()
        await daemon.wait_healthy(True, within=60)
        code, _ = await daemon.stop()
        assert code == 0
        for endpoint in Endpoint:
            await assert_equals_truth(url, sim, endpoint)

    _assert_one_clear_line(daemon, "disk is full", ("disk", "free"))
    assert daemon.events("endpoint_recovered")
