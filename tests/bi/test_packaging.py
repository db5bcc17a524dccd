"""The report template and the dashboards ship in the wheel: `pip install .` users get them."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", ["syncer.bi", "syncer.dashboards"])
def test_every_data_file_is_declared_package_data(package: str) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert package in config["packages"]
    globs = config["package-data"][package]
    folder = ROOT / package.replace(".", "/")
    data = [p for p in folder.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert data
    for path in data:
        relative = path.relative_to(folder)
        shipped = any(
            relative.match(g) and len(relative.parts) == len(Path(g).parts) for g in globs
        )
        assert shipped, f"{relative} would not ship in the wheel"
