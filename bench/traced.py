"""Run a syncer command with stage timers (bench only): where a load's time goes.

    python bench/traced.py OUT.json backfill --since 31d --endpoint commits

The syncer process itself, with thin wrappers installed before it starts: the client's block
stream and the write path's asyncpg calls are timed and each call is filed under a stage by
the table it writes. Per endpoint (a context variable set by each pass), in seconds:

- `http_cut`: waiting for the next block of records (the request, the body, the cutting);
- `copy_stage`: COPY of a block (or of parsed rows) into a staging table;
- `lookup`: finding the stored rows a block serves unchanged (by digest, a probe per row);
- `typing`: staged text → typed rows (and the file entries out of the JSON);
- `upsert`: the guarded upsert of the endpoint's own table;
- `files`: replacing file rows (delete and insert into ai_code_change_files);
- `commit`: COMMIT (the WAL flush) and savepoint releases;
- `indexes`: a first load's index builds (and their drop) when it sets them aside;
- `other`: every other statement of the write path (the mark, quarantine, set-up);
- `pass`: the wall time of the pass, lock to run log.
Each pass's wall time and API wait are also listed (`passes`), for a daemon's many passes.

Two lanes write at once, so the stages of a load can add up to more than its wall time.
OUT.json also gets the process's peak RSS (MB) and CPU seconds.
"""

from __future__ import annotations

import contextvars
import json
import re
import resource
import sys
from collections import defaultdict
from collections.abc import AsyncGenerator, Callable
from time import perf_counter
from typing import Any

import asyncpg

from syncer import cli, sync
from syncer.client.api import CursorClient

_endpoint: contextvars.ContextVar[str] = contextvars.ContextVar("endpoint", default="-")
#: set while the stream is awaited: the client's own statements (its rate budget) are in there
_in_stream: contextvars.ContextVar[bool] = contextvars.ContextVar("in_stream", default=False)
_totals: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
_others: defaultdict[str, float] = defaultdict(float)  # "other" statements by their start
#: per endpoint, each pass's (wall seconds, seconds waiting for the API): a daemon's passes
_passes: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)
_RULES = [
    (re.compile(r"^\s*(COMMIT|RELEASE SAVEPOINT)", re.I), "commit"),
    (re.compile(r"^\s*(CREATE INDEX|DROP INDEX|ALTER TABLE)", re.I), "indexes"),
    (re.compile(r"INSERT INTO stage_raw_same_\w+", re.I), "lookup"),
    (re.compile(r"INSERT INTO (stage_ready_\w+|stage_raw_files)\b", re.I), "typing"),
    (re.compile(r"(INSERT INTO|DELETE FROM) ai_code_change_files\b", re.I), "files"),
    (re.compile(r"INSERT INTO (ai_commits|ai_code_changes)\b", re.I), "upsert"),
]


def _stage(sql: str) -> str:
    for pattern, stage in _RULES:
        if pattern.search(sql):
            return stage
    return "other"


def _add(stage: str, seconds: float) -> None:
    if stage == "http_cut" or not _in_stream.get():
        _totals[_endpoint.get()][stage] += seconds


def _wrap_query(method: Callable[..., Any]) -> Callable[..., Any]:
    async def timed(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        try:
            return await method(self, query, *args, **kwargs)
        finally:
            seconds, stage = perf_counter() - started, _stage(query)
            _add(stage, seconds)
            if stage == "other" and not _in_stream.get():
                _others[f"{_endpoint.get()}: {' '.join(query.split())[:70]}"] += seconds

    return timed


def _wrap_copy(method: Callable[..., Any]) -> Callable[..., Any]:
    async def timed(self: asyncpg.Connection, table: str, *args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        try:
            return await method(self, table, *args, **kwargs)
        finally:
            stage = "files" if table == "ai_code_change_files" else "copy_stage"
            _add(stage, perf_counter() - started)

    return timed


def _wrap_stream(method: Callable[..., Any]) -> Callable[..., Any]:
    async def timed(self: CursorClient, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        blocks = method(self, *args, **kwargs)
        try:
            while True:
                started = perf_counter()
                token = _in_stream.set(True)
                try:
                    block = await blocks.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    _in_stream.reset(token)
                    _add("http_cut", perf_counter() - started)
                yield block
        finally:
            await blocks.aclose()

    return timed


def _wrap_pass(method: Callable[..., Any]) -> Callable[..., Any]:
    async def timed(self: sync.Pass) -> Any:
        endpoint = self.endpoint.value
        _endpoint.set(endpoint)
        started, api = perf_counter(), _totals[endpoint]["http_cut"]
        try:
            return await method(self)
        finally:
            seconds = perf_counter() - started
            _add("pass", seconds)
            _passes[endpoint].append((seconds, _totals[endpoint]["http_cut"] - api))

    return timed


def install() -> None:
    """Put the timers in place (before the command starts)."""
    conn = asyncpg.connection.Connection
    for name in ("execute", "fetch", "fetchrow", "fetchval"):
        setattr(conn, name, _wrap_query(getattr(conn, name)))
    for name in ("copy_to_table", "copy_records_to_table"):
        setattr(conn, name, _wrap_copy(getattr(conn, name)))
    CursorClient.stream_blocks = _wrap_stream(CursorClient.stream_blocks)  # type: ignore[method-assign]
    sync.Pass.run = _wrap_pass(sync.Pass.run)  # type: ignore[method-assign]


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    install()
    try:
        return cli.main(argv)
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open(out, "w") as f:
            json.dump(
                {
                    "peak_rss_mb": usage.ru_maxrss / 1024,
                    "cpu_s": usage.ru_utime + usage.ru_stime,
                    "stages": {e: dict(stages) for e, stages in _totals.items()},
                    "other": dict(sorted(_others.items(), key=lambda kv: -kv[1])[:12]),
                    "passes": dict(_passes),
                },
                f,
            )


if __name__ == "__main__":
    sys.exit(main())
