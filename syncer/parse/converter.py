"""One function per CSV header that turns a record's fields into a row, compiled at run time.

It inlines the common cases (`v or None`, `int(v)`, `datetime.fromisoformat(v)`) into one
unpack and one tuple; anything unusual makes it raise, and the parser then converts the
record the careful way, column by column, to name what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from syncer.endpoints import Column, Kind
from syncer.parse.rows import Row, to_files, to_int, to_timestamp

Convert = Callable[[list[str]], Row]


def no_extra(fields: list[str]) -> None:
    """The `extra` of a header with only known columns: none."""
    return None


def extra_reader(unknown: list[tuple[str, int]]) -> Callable[[list[str]], dict[str, str | None]]:
    """The `extra` of a header with unknown columns: their values by name."""

    def extra(fields: list[str]) -> dict[str, str | None]:
        return {name: fields[index] or None for name, index in unknown}

    return extra


_FAST = {
    (Kind.TEXT, False): "{x} or None",
    (Kind.TEXT, True): "{x} or _empty()",
    (Kind.INT, False): "(_int({x}) if len({x}) < 19 else _big({x})) if {x} else None",
    (Kind.INT, True): "_int({x}) if len({x}) < 19 else _big({x})",
    (Kind.BOOL, False): "_bool[{x}]",
    (Kind.BOOL, True): "_bool_required[{x}]",
    (Kind.TIMESTAMP, False): "(_iso({x}) if {x}[-1] == 'Z' else _ts({x})) if {x} else None",
    (Kind.TIMESTAMP, True): "_iso({x}) if {x}[-1:] == 'Z' else _ts_required({x})",
    (Kind.FILES, False): "_files({x}) if {x} else ()",
    (Kind.FILES, True): "_files({x})",
}


def compile_converter(
    plan: list[tuple[int | None, Column]],
    width: int,
    extra: Callable[[list[str]], dict[str, str | None] | None],
) -> Convert:
    """Build `convert(fields) -> row` for this header: one unpack, one tuple, no loop.

    The source holds only field positions and the fixed expressions above, never text from
    the stream. A wrong field count fails the unpack; any odd value raises; the caller then
    takes the careful path.
    """
    fields = ", ".join(f"c{index}" for index in range(width))
    values = [
        "None" if index is None else _FAST[column.kind, column.required].format(x=f"c{index}")
        for index, column in plan
    ]
    values.append("None" if extra is no_extra else "_extra(f)")
    source = f"def convert(f):\n    {fields}, = f\n    return ({', '.join(values)},)\n"
    namespace: dict[str, Any] = {
        "_int": int,
        "_big": to_int,
        "_empty": _raise_empty,
        "_bool": {"true": True, "false": False, "": None},
        "_bool_required": {"true": True, "false": False},
        "_iso": datetime.fromisoformat,
        "_ts": to_timestamp,
        "_ts_required": to_timestamp,
        "_files": to_files,
        "_extra": extra,
    }
    exec(compile(source, f"<csv converter {width} columns>", "exec"), namespace)
    convert: Convert = namespace["convert"]
    return convert


def refuse(fields: list[str]) -> Row:
    """The converter of a block with NUL or non-UTF-8 bytes: every record goes the careful way."""
    raise ValueError("dirty block")


def _raise_empty() -> None:
    raise ValueError("required value is empty")
