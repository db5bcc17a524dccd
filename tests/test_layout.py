"""The package keeps the shape ARCHITECTURE.md draws: data flows one way, no cycle, a short tower.

cli → commands | daemon → sync → client → parse → store, with plain leaves (config, errors,
endpoints, results, …) anyone may import. The one deliberate exception: the store takes
parse's row and block types, and re-parses a block the server refused (`store` → `parse`).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "syncer"

#: The flow, upstream first: a stage imports only stages after it (and the leaves).
FLOW = (
    ("cli",),
    ("demo",),
    ("commands", "daemon", "bi"),
    ("verify",),
    ("sync",),
    ("prune",),
    ("client",),
    ("parse",),
    ("store",),
)
RANK = {stage: rank for rank, stages in enumerate(FLOW) for stage in stages}
#: Plain modules: anyone may import them, and they import nothing of the flow.
LEAVES = ("config", "errors", "endpoints", "timespec", "results", "logs", "stopping", "progress")
#: The simulator stands apart: it imports only leaves, and only these stages start it.
SIMULATOR_USERS = {"cli", "demo"}
#: Imports against the flow, each named in ARCHITECTURE.md: (importing stage, imported stage).
EXCEPTIONS = {("store", "parse")}
MAX_DEPTH = 10


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts).removesuffix(".__init__")] = path
    return found


MODULES = _modules()


@cache
def imports(module: str) -> frozenset[str]:
    """Every syncer module `module` imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("syncer"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                out.add(name if name in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name in MODULES}
    return frozenset(name for name in out if name in MODULES and name != module)


def stage(module: str) -> str:
    """`syncer.store.writer` → `store`; `syncer.sync` → `sync`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_layout_finds_the_modules() -> None:
    assert {"syncer.cli", "syncer.sync", "syncer.store.writer", "syncer.parse.blocks"} <= set(
        MODULES
    )


def _against_the_flow(source: str) -> list[tuple[str, str]]:
    return sorted(
        (module, target)
        for module in MODULES
        if stage(module) == source
        for target in imports(module)
        if stage(target) in RANK
        and RANK[stage(target)] <= RANK[source]
        and stage(target) != source
        and (source, stage(target)) not in EXCEPTIONS
    )


@pytest.mark.parametrize("source", sorted(RANK))
def test_data_flows_one_way(source: str) -> None:
    assert _against_the_flow(source) == []


def test_the_simulator_stands_apart() -> None:
    assert sorted(t for t in imports("syncer.fakeapi") if stage(t) in RANK) == []
    for module in MODULES:
        if stage(module) == "fakeapi":
            assert sorted(t for t in imports(module) if stage(t) in RANK) == [], module
    users = {stage(m) for m in MODULES for t in imports(m) if stage(t) == "fakeapi"}
    assert users - {"fakeapi"} <= SIMULATOR_USERS


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_nothing_of_the_pipeline(leaf: str) -> None:
    assert sorted(t for t in imports(f"syncer.{leaf}") if stage(t) in RANK) == []


def test_no_cycle_and_a_short_tower() -> None:
    visiting: list[str] = []

    @cache
    def chain(module: str) -> tuple[str, ...]:
        assert module not in visiting, "cycle: " + " → ".join([*visiting, module])
        visiting.append(module)
        longest = max((chain(d) for d in imports(module)), key=len, default=())
        visiting.pop()
        return (module, *longest)

    tower = chain("syncer.cli")
    assert len(tower) <= MAX_DEPTH, " → ".join(tower)
