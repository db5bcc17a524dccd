"""The Grafana dashboard: a sound layout, one provisioned data source, and SQL that runs (as the
read-only role) against the backfilled database with Grafana's macros expanded."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from .conftest import BiData

DASHBOARDS = resources.files("syncer.dashboards")
FROM, TO = "2026-01-01T00:00:00Z", "2026-12-31T23:59:59Z"  # the fixed data set is in Feb-Mar
_MACROS = [
    (re.compile(r"\$__timeFilter\(([^)]+)\)"), rf"\1 BETWEEN '{FROM}' AND '{TO}'"),
    (re.compile(r"\$__timeFrom\(\)"), f"'{FROM}'"),
    (re.compile(r"\$__timeTo\(\)"), f"'{TO}'"),
]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARDS.joinpath("syncer-ai-code.json").read_text())
    return loaded


def _datasource_uid() -> str:
    text = DASHBOARDS.joinpath("provisioning/datasources/syncer.yaml").read_text()
    (source,) = yaml.safe_load(text)["datasources"]
    assert source["type"] == "grafana-postgresql-datasource"
    uid: str = source["uid"]
    return uid


def expand(sql: str) -> str:
    """Grafana's time macros as literals, the way its PostgreSQL data source writes them."""
    for pattern, replacement in _MACROS:
        sql = pattern.sub(replacement, sql)
    return sql


def _queries() -> list[tuple[str, str]]:
    return [(p["title"], t["rawSql"]) for p in _dashboard()["panels"] for t in p["targets"]]


def test_ids_are_unique_and_the_grid_does_not_overlap() -> None:
    panels = _dashboard()["panels"]
    assert len(panels) >= 10
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)
    boxes = [p["gridPos"] for p in panels]
    for box in boxes:
        assert box["x"] >= 0
        assert box["w"] > 0
        assert box["x"] + box["w"] <= 24
    for a, b in itertools.combinations(boxes, 2):
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, (a, b)


def test_every_panel_uses_the_provisioned_data_source() -> None:
    uid = _datasource_uid()
    for panel in _dashboard()["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
    provider = yaml.safe_load(
        DASHBOARDS.joinpath("provisioning/dashboards/syncer.yaml").read_text()
    )
    assert provider["providers"][0]["type"] == "file"


@pytest.mark.parametrize(("title", "sql"), _queries(), ids=[t for t, _ in _queries()])
def test_every_query_is_a_plain_select_from_the_views(title: str, sql: str) -> None:
    assert sql.lstrip().upper().startswith("SELECT")
    assert ";" not in sql
    relations = re.findall(r"\b(?:FROM|JOIN)\s+([\w.]+)", sql, flags=re.IGNORECASE)
    assert relations
    assert all(r.startswith("syncer_bi.") for r in relations), relations
    if "freshness" not in sql:
        assert "$__timeFilter(" in sql, "follows the dashboard's time range"


@pytest.fixture
async def grafana_role(bi_data: BiData, bi_conn: asyncpg.Connection) -> Any:
    """A role given the views by `syncer grant-read`, as the compose profile does."""
    from syncer.bi.grants import grant_read
    from syncer.store.db import create_engine

    name = f"syncer_grafana_{uuid.uuid4().hex[:8]}"
    await bi_conn.execute(f"CREATE ROLE {name} NOLOGIN")
    engine = create_engine(bi_data.url)
    try:
        assert await grant_read(engine, name) == []
        yield name
    finally:
        await engine.dispose()
        await bi_conn.execute(f"DROP OWNED BY {name}")
        await bi_conn.execute(f"DROP ROLE {name}")


async def test_every_query_runs_as_the_read_only_role(
    bi_conn: asyncpg.Connection, grafana_role: str
) -> None:
    await bi_conn.execute(f"SET ROLE {grafana_role}")
    try:
        for title, sql in _queries():
            expanded = expand(sql)
            assert "$" not in expanded, f"{title}: a macro the test does not expand"
            rows = await bi_conn.fetch(expanded)
            assert rows, f"{title}: no rows for the data set"
            if "time" in rows[0]:
                assert all(r["time"] is not None for r in rows), title
    finally:
        await bi_conn.execute("RESET ROLE")


def _psql(url: str, *args: str) -> None:
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *args, url],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("psql") is None, reason="no psql on PATH")
async def test_the_compose_role_script_is_idempotent(
    bi_data: BiData, bi_conn: asyncpg.Connection
) -> None:
    name = f"syncer_grafana_{uuid.uuid4().hex[:8]}"
    script = str(DASHBOARDS.joinpath("grafana-role.sql"))
    try:
        for _ in range(2):
            _psql(bi_data.url, "-v", f"role={name}", "-v", "password=it's secret", "-f", script)
        assert await bi_conn.fetchval(
            "SELECT rolcanlogin AND NOT rolsuper FROM pg_roles WHERE rolname = $1", name
        )
    finally:
        await bi_conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_the_grafana_profile_reads_through_the_granted_role() -> None:
    root = Path(__file__).resolve().parents[2]
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    role, grant, grafana = (services[n] for n in ("grafana-role", "grafana-grant", "grafana"))
    for service in (role, grant, grafana):
        assert service["profiles"] == ["grafana"]
    user = grafana["environment"]["SYNCER_BI_USER"]
    assert grant["command"] == ["syncer", "grant-read", user]
    assert f"role={user}" in role["command"]
    assert grant["depends_on"]["grafana-role"]["condition"] == "service_completed_successfully"
    assert grafana["depends_on"]["grafana-grant"]["condition"] == "service_completed_successfully"
    for volume in (*grafana["volumes"], *role["volumes"]):
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (root / source).exists(), source
    datasource = (root / "syncer/dashboards/provisioning/datasources/syncer.yaml").read_text()
    for variable in re.findall(r"\$\{(\w+)\}", datasource):
        assert variable in grafana["environment"], variable
