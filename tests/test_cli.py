"""The command line: help for every contract command, one-line errors, idempotent migrate."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
import pytest

from syncer.store.db import to_libpq_url

COMMANDS = ("run", "sync", "backfill", "status", "migrate", "fake-api")


def syncer(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("CURSOR_", "SYNC_", "DATABASE_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "syncer", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.slow
def test_help_lists_every_command() -> None:
    result = syncer("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"    {command}" in result.stdout
    for command in COMMANDS:
        sub = syncer(command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "usage: syncer" in sub.stdout


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"CURSOR_API_BASE_URL": "not-a-url"}, ("sync",), "CURSOR_API_BASE_URL"),
        ({"SYNC_INTERVAL": "often"}, ("status",), "SYNC_INTERVAL"),
        ({"DATABASE_URL": "mysql://x@y/z"}, ("migrate",), "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u@127.0.0.1:1/x"}, ("sync",), "CURSOR_API_KEY is not set"),
    ],
)
def test_bad_configuration_is_one_line(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    result = syncer(*args, env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_one_line() -> None:
    result = syncer(
        "sync", env={"DATABASE_URL": "postgresql://u@127.0.0.1:1/x", "CURSOR_API_KEY": "k"}
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("syncer: error: cannot connect to postgresql")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("backfill",), "the following arguments are required: --since"),
        (("backfill", "--since", "yesterday"), "is not a date"),
        (("backfill", "--since", "1d", "--until", "3d"), "must be before"),
        (("backfill", "--since", "3d", "--endpoint", "users"), "choose commits or changes"),
    ],
)
def test_bad_arguments(args: tuple[str, ...], message: str) -> None:
    result = syncer(
        *args, env={"CURSOR_API_KEY": "k", "DATABASE_URL": "postgresql://u@127.0.0.1:1/x"}
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
async def test_migrate_twice(new_database: object) -> None:
    url: str = await new_database()  # type: ignore[operator]
    first = syncer("migrate", env={"DATABASE_URL": to_libpq_url(url)})
    second = syncer("migrate", env={"DATABASE_URL": to_libpq_url(url)})
    assert first.returncode == 0, first.stderr
    assert "migrated from empty to revision" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "already at revision" in second.stdout
    conn = await asyncpg.connect(to_libpq_url(url))
    try:
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    finally:
        await conn.close()
    assert {
        "ai_commits",
        "ai_code_changes",
        "ai_code_change_files",
        "sync_state",
        "sync_runs",
        "rejected_rows",
    } <= tables
