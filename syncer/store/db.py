"""Database URLs, engines and migrations: which PostgreSQL to use and how to bring it to head."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from syncer.config import Settings
from syncer.errors import ConfigError, DatabaseError, DatabaseFull, DatabaseReadOnly

if TYPE_CHECKING:
    from alembic.config import Config

#: Failures of the database or of the connection to it. InternalClientError is asyncpg's
#: "another operation is in progress": a connection the server dropped mid-query (a restart)
#: can be left so, and a pass must fail on it like on any lost connection, not crash.
DB_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


def reason(exc: BaseException) -> str:
    """The first line of what the driver said about a failure."""
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return message


#: read_only_sql_transaction: a server that answers but takes no writes (a standby, a demoted
#: primary, default_transaction_read_only). Not cannot_connect_now (57P03): a server starting
#: up or shutting down says that too, and it is only unreachable for a moment.
_READ_ONLY = {"25006"}
#: disk_full, and insufficient_resources (its class), as a full data disk or tablespace raises
_FULL = {"53100", "53000"}


def database_error(context: str, exc: BaseException) -> DatabaseError:
    """The `DatabaseError` for a driver failure: its cause named, when it is one an operator
    must fix on the server (no writes accepted, no space left), so the hint can say what to do.
    """
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    state = getattr(orig, "sqlstate", None)
    if state in _READ_ONLY:
        return DatabaseReadOnly(f"{context}: the database is read-only ({reason(exc)})")
    if state in _FULL:
        return DatabaseFull(f"{context}: the database's disk is full ({reason(exc)})")
    return DatabaseError(f"{context}: {reason(exc)}")


log = structlog.get_logger(__name__)

#: Advisory lock key taken while migrating, so concurrent `syncer migrate` runs queue up.
MIGRATION_LOCK_KEY = 0x5359_4E43_0001


def to_asyncpg_url(url: str) -> str:
    """`postgresql://…` / `postgres://…` → `postgresql+asyncpg://…` (SQLAlchemy's async form)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError("DATABASE_URL must look like postgresql://user:password@host:5432/db")
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    raise ConfigError(f"DATABASE_URL: unsupported scheme {scheme}://; use postgresql://")


def to_libpq_url(url: str) -> str:
    """Any accepted form → plain `postgresql://…` (for asyncpg, psql and BI tools)."""
    return "postgresql://" + to_asyncpg_url(url).partition("://")[2]


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - never let redaction itself leak the input
        return "<unparseable database URL>"


def database_url(settings: Settings) -> str:
    """The configured DATABASE_URL, or the embedded server's (started if needed), asyncpg form."""
    if settings.database_url is not None:
        return to_asyncpg_url(settings.database_url.get_secret_value())
    from syncer.store.embedded import EmbeddedPostgres

    return to_asyncpg_url(EmbeddedPostgres(settings.sync_data_dir).start())


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; connections are checked before use, so a restarted server is survived.

    A pass holds up to four connections per endpoint (its lock, two write lanes, bookkeeping).
    The pool hands out the connection returned last (LIFO): a daemon's passes then find their
    staging tables, prepared statements and the server's catalog caches on the connections
    they used before, rather than going round every pooled one.
    """
    return create_async_engine(
        to_asyncpg_url(url),
        pool_size=8,
        max_overflow=8,
        pool_pre_ping=True,
        pool_use_lifo=True,
        **kwargs,
    )


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the migrations shipped with the package."""
    from alembic.config import Config

    script_location = Path(str(resources.files("syncer.migrations")))
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    if url:
        cfg.set_main_option("sqlalchemy.url", to_asyncpg_url(url).replace("%", "%%"))
    return cfg


def _lock(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def _upgrade(connection: Connection, cfg: Config, revision: str) -> None:
    from alembic import command

    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _downgrade(connection: Connection, cfg: Config, revision: str) -> None:
    from alembic import command

    cfg.attributes["connection"] = connection
    command.downgrade(cfg, revision)


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def migrate(engine: AsyncEngine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to `revision` under an advisory lock (safe to run concurrently); (before, after).

    A database already at the shipped head is seen with one query, without loading Alembic
    (a tenth of a syncer process's memory, and every sync and backfill migrates first).
    """
    if revision == "head" and (shipped := shipped_head()) is not None:
        try:
            async with engine.connect() as conn:
                current = await conn.scalar(text("SELECT max(version_num) FROM alembic_version"))
        except Exception:  # noqa: BLE001 - no version table yet, or unreachable: Alembic's turn
            current = None
        if current == shipped:
            return current, current
    cfg = alembic_config()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_lock)
            before = await conn.run_sync(_current)
            await conn.run_sync(_upgrade, cfg, revision)
            after = await conn.run_sync(_current)
    except (TimeoutError, OSError) as exc:
        raise DatabaseError(f"cannot reach PostgreSQL to migrate: {exc}") from exc
    return before, after


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Downgrade to `revision` (used by tests and by operators rolling back)."""
    cfg = alembic_config()
    async with engine.begin() as conn:
        await conn.run_sync(_lock)
        await conn.run_sync(_downgrade, cfg, revision)


def head_revision() -> str | None:
    """The newest migration shipped with this version."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*['\"]?(\w+)", re.M)


def shipped_head() -> str | None:
    """The head of the shipped migrations read from their files (as `head_revision`, without
    Alembic), or None when they do not name exactly one."""
    revisions, parents = set(), set()
    for path in Path(str(resources.files("syncer.migrations") / "versions")).glob("*.py"):
        found = dict(_REVISION.findall(path.read_text(encoding="utf-8")))
        if "revision" in found:
            revisions.add(found["revision"])
            parents.add(found.get("down_revision"))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None
