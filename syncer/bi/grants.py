"""`syncer grant-read ROLE`: an existing role may read the `syncer_bi` views and nothing else.

The views are owned by the role that ran the migrations and read the raw tables with its
rights, so granting SELECT on the views is enough; the raw tables (commit messages, the run
log) stay out of reach. `ALTER DEFAULT PRIVILEGES` covers views a later migration adds, as long
as the same role runs that migration (the one in DATABASE_URL, which this command also uses).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from syncer.errors import ConfigError

SCHEMA = "syncer_bi"

_RAW_PRIVILEGES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
  AND has_table_privilege(:role, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
ORDER BY 1
"""


async def grant_read(engine: AsyncEngine, role: str) -> list[str]:
    """Grant `role` read access to the views (idempotent); return warnings worth showing."""
    async with engine.begin() as conn:
        found = (
            await conn.execute(
                text("SELECT quote_ident(rolname), rolsuper FROM pg_roles WHERE rolname = :r"),
                {"r": role},
            )
        ).first()
        if found is None:
            raise ConfigError(
                f"grant-read: role {role!r} does not exist; create it first "
                "(CREATE ROLE name LOGIN PASSWORD '...')"
            )
        ident, superuser = found
        database = (await conn.execute(text("SELECT quote_ident(current_database())"))).scalar()
        for statement in (
            f"GRANT CONNECT ON DATABASE {database} TO {ident}",
            f"GRANT USAGE ON SCHEMA {SCHEMA} TO {ident}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {ident}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT SELECT ON TABLES TO {ident}",
        ):
            # exec_driver_sql: a role name may contain ':' which text() would take for a bind
            await conn.exec_driver_sql(statement)
        leaks = (await conn.execute(text(_RAW_PRIVILEGES), {"role": role})).scalars().all()
    warnings = []
    if superuser:
        warnings.append(f"role {role!r} is a superuser: it can read and write everything anyway")
    elif leaks:
        warnings.append(
            f"role {role!r} already had privileges on raw tables ({', '.join(leaks)}); "
            "grant-read adds none and revokes none"
        )
    return warnings
