"""CSV field text exactly as `csv.writer` with QUOTE_MINIMAL would write it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from syncer.timespec import isoformat_z

_SPECIAL = (",", '"', "\n", "\r")


def quote(text: str) -> str:
    """Quote a field only when it holds a delimiter, a quote or a line break."""
    if any(char in text for char in _SPECIAL):
        return '"' + text.replace('"', '""') + '"'
    return text


def field(value: object) -> str:
    """One typed value as CSV text: empty for None, `true`/`false`, API timestamps."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return isoformat_z(value)
    if isinstance(value, int):
        return str(value)
    return quote(str(value))


def metadata_json(files: Sequence[Mapping[str, object]], unknown_key: bool = False) -> str:
    """A change's file entries as the `metadata_json` text (unquoted), camelCase keys."""
    entries = []
    for entry in files:
        item: dict[str, object] = {}
        if entry.get("file_name") is not None:
            item["fileName"] = entry["file_name"]
        item["fileExtension"] = entry.get("file_extension")
        if unknown_key:
            item["agentTool"] = AGENT_TOOL
        item["linesAdded"] = entry.get("lines_added")
        item["linesDeleted"] = entry.get("lines_deleted")
        entries.append(item)
    return json.dumps(entries, ensure_ascii=False, separators=(",", ":"))


#: the value of the unknown key put into metadata entries by the `extra_column` fault
AGENT_TOOL = "edit_file"
