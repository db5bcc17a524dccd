"""The soak's moving parts: the daemon as a subprocess, its /healthz watched, the database's
own PostgreSQL (restarted, made read-only), and `syncer backfill` runs beside the daemon."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

from syncer.config import Settings
from syncer.store.db import to_libpq_url
from syncer.store.embedded import EmbeddedPostgres

KEY = "soak-key-4c1d"
SETTINGS_VARIABLES = {str(f.validation_alias).upper() for f in Settings.model_fields.values()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def has_setting(name: str) -> bool:
    """Whether this build of syncer knows the environment variable `name`."""
    return name.upper() in SETTINGS_VARIABLES


def environment(**variables: str) -> dict[str, str]:
    """The process environment without ambient syncer settings, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARIABLES}
    env.update(variables)
    return env


class Daemon:
    """`syncer run` as a subprocess on a fixed health port; each start logs to its own file."""

    def __init__(self, workdir: Path, variables: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.variables = {
            **variables,
            "SYNC_HTTP_HOST": "127.0.0.1",
            "SYNC_HTTP_PORT": str(self.port),
            "SYNC_LOG_FORMAT": "json",
        }
        self.process: asyncio.subprocess.Process | None = None
        self.logs: list[Path] = []
        self.started_at = 0.0  # monotonic, of the running process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        log = self.workdir / f"daemon-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "syncer",
                "run",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=environment(**self.variables),
                cwd=self.workdir,
            )
        self.started_at = time.monotonic()

    async def kill(self) -> None:
        """SIGKILL: no chance to roll back or write a run row."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> int | None:
        """SIGTERM and wait for the exit code."""
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            await self.kill()
            return None

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def rss_mb(self) -> float | None:
        if not self.alive() or self.process is None:
            return None
        try:
            return float(psutil.Process(self.process.pid).memory_info().rss) / 2**20
        except psutil.Error:
            return None

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line of every start."""
        out = []
        for log in self.logs:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        continue
        return out

    def log_text(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.logs)


@dataclass
class Probe:
    """One look at /healthz: monotonic time, status (None: no answer), endpoints' last success."""

    at: float
    status: int | None
    last_success: dict[str, str | None]


class HealthWatch:
    """Polls /healthz every half second for the whole run."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.probes: list[Probe] = []

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not stop.is_set():
                self.probes.append(await self._probe(http))
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except TimeoutError:
                    pass

    async def _probe(self, http: aiohttp.ClientSession) -> Probe:
        now = time.monotonic()
        try:
            async with http.get(f"{self.daemon.url}/healthz") as resp:
                body = await resp.json()
                success = {k: v.get("last_success_at") for k, v in body["endpoints"].items()}
                return Probe(now, resp.status, success)
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            return Probe(now, None, {})

    def longest_unhealthy(self, since: float = 0.0) -> float:
        """The longest stretch of probes that were not 200, in seconds."""
        longest, began = 0.0, None
        for probe in self.probes:
            if probe.at < since:
                continue
            if probe.status != 200:
                began = probe.at if began is None else began
                longest = max(longest, probe.at - began)
            else:
                began = None
        return longest

    def recovered_after(self, moment: float, wall: datetime) -> float | None:
        """Seconds from `moment` until every endpoint had succeeded after it (None: never)."""
        for probe in self.probes:
            if probe.at < moment or probe.status is None:
                continue
            stamps = probe.last_success.values()
            if stamps and all(s is not None and _parse(s) > wall for s in stamps):
                return probe.at - moment
        return None


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


class Database:
    """The soak's own embedded PostgreSQL: restarted, made read-only, queried for the checks."""

    def __init__(self, workdir: Path) -> None:
        self.pg = EmbeddedPostgres(workdir / "pg", port=free_port())
        self.url = ""

    async def start(self) -> None:
        self.url = await asyncio.to_thread(self.pg.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.pg.stop)

    async def _admin(self, *statements: str) -> None:
        conn = await asyncpg.connect(to_libpq_url(self.pg.url("postgres")))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def read_only(self, on: bool) -> None:
        """On: every session is cut and the next ones are read-only (a failover to a standby).
        Off: writable again for new sessions; open ones stay read-only until they reconnect."""
        if on:
            await self._admin(
                "ALTER DATABASE syncer SET default_transaction_read_only = on",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = 'syncer' AND pid <> pg_backend_pid()",
            )
        else:
            await self._admin("ALTER DATABASE syncer RESET default_transaction_read_only")

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(to_libpq_url(self.url))


@dataclass
class Backfill:
    """One `syncer backfill` run beside the daemon."""

    since: datetime
    started: float  # monotonic
    code: int | None = None
    took: float = 0.0
    output: str = ""


@dataclass
class Backfills:
    """At most one backfill at a time; every run kept for the summary."""

    workdir: Path
    variables: dict[str, str]
    runs: list[Backfill] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def launch(self, since: datetime) -> Backfill | None:
        if self.busy():
            return None
        run = Backfill(since, time.monotonic())
        self.runs.append(run)
        self.task = asyncio.create_task(self._run(run))
        return run

    async def wait(self) -> None:
        if self.task is not None:
            await self.task

    async def _run(self, run: Backfill) -> None:
        spec = run.since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "syncer",
            "backfill",
            "--since",
            spec,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.workdir,
            env=environment(**self.variables, SYNC_LOG_FORMAT="json"),
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), 300)
        except TimeoutError:
            process.kill()
            output, _ = await process.communicate()
        run.code = process.returncode
        run.took = time.monotonic() - run.started
        run.output = output.decode(errors="replace")
        (self.workdir / f"backfill-{len(self.runs)}.log").write_text(run.output)
