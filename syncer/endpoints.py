"""The two synced endpoints and their CSV columns, in the API's documented order (then newer ones).

This is the one place that knows the shape of the data: the CSV parser, the simulator
and the store all read these specs, so a column added here flows through all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    """How a CSV field is typed."""

    TEXT = "text"  #: kept as is; empty → NULL
    INT = "int"  #: decimal integer; empty → NULL
    BOOL = "bool"  #: `true` / `false`; empty → NULL
    TIMESTAMP = "timestamp"  #: ISO 8601 datetime → aware UTC datetime; empty → NULL
    FILES = "files"  #: `metadata_json`: a JSON array of file entries


@dataclass(frozen=True, slots=True)
class Column:
    """One CSV column: its header name, its type, and whether a row without it is rejected."""

    name: str
    kind: Kind
    required: bool = False


@dataclass(frozen=True, slots=True)
class FileKey:
    """One key of a `metadata_json` entry and the child-table column it lands in."""

    json_name: str
    column: str
    kind: Kind


class Endpoint(str, Enum):
    """A synced endpoint; the value is its name in `sync_state` and on the command line."""

    COMMITS = "commits"  #: /analytics/ai-code/commits(.csv) → ai_commits
    CHANGES = "changes"  #: /analytics/ai-code/changes(.csv) → ai_code_changes (+ files)

    @property
    def csv_path(self) -> str:
        """The streaming CSV endpoint's path."""
        return f"/analytics/ai-code/{self.value}.csv"

    @property
    def json_path(self) -> str:
        """The paginated JSON endpoint's path."""
        return f"/analytics/ai-code/{self.value}"

    @property
    def columns(self) -> tuple[Column, ...]:
        """The CSV columns in documented order."""
        return COMMIT_COLUMNS if self is Endpoint.COMMITS else CHANGE_COLUMNS

    @property
    def key(self) -> str:
        """The primary-key column."""
        return self.columns[0].name

    @property
    def table(self) -> str:
        """The table the endpoint's rows land in."""
        return "ai_commits" if self is Endpoint.COMMITS else "ai_code_changes"


COMMIT_COLUMNS: tuple[Column, ...] = (
    Column("commit_hash", Kind.TEXT, required=True),
    Column("user_id", Kind.TEXT),
    Column("user_email", Kind.TEXT),
    Column("repo_name", Kind.TEXT),
    Column("branch_name", Kind.TEXT),
    Column("is_primary_branch", Kind.BOOL),
    Column("total_lines_added", Kind.INT),
    Column("total_lines_deleted", Kind.INT),
    Column("tab_lines_added", Kind.INT),
    Column("tab_lines_deleted", Kind.INT),
    Column("composer_lines_added", Kind.INT),
    Column("composer_lines_deleted", Kind.INT),
    Column("non_ai_lines_added", Kind.INT),
    Column("non_ai_lines_deleted", Kind.INT),
    Column("message", Kind.TEXT),
    Column("commit_ts", Kind.TIMESTAMP),
    Column("created_at", Kind.TIMESTAMP, required=True),
    #: not in the first alpha document: `ide`, `cli`, `cloud`, or whatever the API sends.
    #: The CSV carries it at different positions in different texts; it is read by name.
    Column("commit_source", Kind.TEXT),
)

CHANGE_COLUMNS: tuple[Column, ...] = (
    Column("change_id", Kind.TEXT, required=True),
    Column("user_id", Kind.TEXT),
    Column("user_email", Kind.TEXT),
    Column("source", Kind.TEXT),
    Column("model", Kind.TEXT),
    Column("total_lines_added", Kind.INT),
    Column("total_lines_deleted", Kind.INT),
    Column("created_at", Kind.TIMESTAMP, required=True),
    Column("metadata_json", Kind.FILES),
)

#: Keys of a `metadata_json` entry, in the order of `ai_code_change_files`' columns.
FILE_KEYS: tuple[FileKey, ...] = (
    FileKey("fileName", "file_name", Kind.TEXT),
    FileKey("fileExtension", "file_extension", Kind.TEXT),
    FileKey("linesAdded", "lines_added", Kind.INT),
    FileKey("linesDeleted", "lines_deleted", Kind.INT),
)
