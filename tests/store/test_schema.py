"""`syncer.store.schema` (what queries use) is exactly what the migrations build, and the
endpoints' columns (what the parser and the staging tables use) are the tables' columns."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import BigInteger, Boolean, Column, DateTime, MetaData, Text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from syncer.endpoints import FILE_KEYS, Endpoint, Kind
from syncer.store.schema import ai_code_change_files, metadata


def _diff(target: MetaData) -> Any:
    def run(conn: Connection) -> Any:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, target)

    return run


async def test_schema_module_matches_the_migrated_database(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff(metadata)) == []


async def test_the_comparison_sees_a_drift(engine: AsyncEngine) -> None:
    drifted = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["ai_commits"].append_column(Column("not_migrated", Text))
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff(drifted))
    assert [(d[0], d[3].name) for d in diff] == [("add_column", "not_migrated")]


_TYPES = {Kind.TEXT: Text, Kind.INT: BigInteger, Kind.BOOL: Boolean, Kind.TIMESTAMP: DateTime}


def test_endpoint_columns_are_table_columns_of_the_same_type() -> None:
    for endpoint in Endpoint:
        table = metadata.tables[endpoint.table]
        for column in endpoint.columns:
            if column.kind is Kind.FILES:
                continue
            assert isinstance(table.c[column.name].type, _TYPES[column.kind]), column.name
            assert table.c[column.name].nullable is not column.required, column.name
    for key in FILE_KEYS:
        assert isinstance(ai_code_change_files.c[key.column].type, _TYPES[key.kind]), key.column
