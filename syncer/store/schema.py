"""The contract's tables as SQLAlchemy Core metadata (migrations create them; queries use them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> Column[object]:
    return Column(
        name,
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.now() if now else None,
    )


ai_commits = Table(
    "ai_commits",
    metadata,
    Column("commit_hash", Text, primary_key=True),
    Column("user_id", Text),
    Column("user_email", Text),
    Column("repo_name", Text),
    Column("branch_name", Text),
    Column("is_primary_branch", Boolean),
    Column("total_lines_added", BigInteger),
    Column("total_lines_deleted", BigInteger),
    Column("tab_lines_added", BigInteger),
    Column("tab_lines_deleted", BigInteger),
    Column("composer_lines_added", BigInteger),
    Column("composer_lines_deleted", BigInteger),
    Column("non_ai_lines_added", BigInteger),
    Column("non_ai_lines_deleted", BigInteger),
    Column("message", Text),
    _ts("commit_ts"),
    _ts("created_at", nullable=False),
    Column("extra", JSONB),
    _ts("synced_at", nullable=False, now=True),
    Column("commit_source", Text),
    # md5 of the CSV record's text the row was typed from (raw path; NULL when written any
    # other way): a reload that serves the same text skips typing and comparing it.
    Column("row_digest", Text),
    Index("ix_ai_commits_created_at", "created_at"),
    Index("ix_ai_commits_commit_ts", "commit_ts"),
    Index("ix_ai_commits_user_email", "user_email"),
    Index("ix_ai_commits_repo_name", "repo_name"),
)

ai_code_changes = Table(
    "ai_code_changes",
    metadata,
    Column("change_id", Text, primary_key=True),
    Column("user_id", Text),
    Column("user_email", Text),
    Column("source", Text),
    Column("model", Text),
    Column("total_lines_added", BigInteger),
    Column("total_lines_deleted", BigInteger),
    _ts("created_at", nullable=False),
    Column("extra", JSONB),
    # md5 of the file list as received: lets an upsert skip rewriting unchanged file rows.
    Column("files_digest", Text),
    # md5 of the metadata JSON text the file rows were typed from (raw path; else NULL): a
    # reload whose text has the same md5 keeps the file rows without parsing it again.
    Column("metadata_digest", Text),
    # md5 of the record's text the row was typed from (raw path; else NULL): see ai_commits.
    Column("row_digest", Text),
    _ts("synced_at", nullable=False, now=True),
    Index("ix_ai_code_changes_created_at", "created_at"),
    Index("ix_ai_code_changes_user_email", "user_email"),
)

ai_code_change_files = Table(
    "ai_code_change_files",
    metadata,
    Column(
        "change_id",
        Text,
        ForeignKey("ai_code_changes.change_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("file_index", Integer, nullable=False),
    Column("file_name", Text),
    Column("file_extension", Text),
    Column("lines_added", BigInteger),
    Column("lines_deleted", BigInteger),
    Column("extra", JSONB),
    # The primary key's leading column also serves lookups of a change's files.
    PrimaryKeyConstraint("change_id", "file_index"),
    Index("ix_ai_code_change_files_file_extension", "file_extension"),
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("endpoint", Text, primary_key=True),
    _ts("high_water_mark"),
    _ts("updated_at", nullable=False, now=True),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("run_id", Text, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("command", Text, nullable=False),
    _ts("window_start"),
    _ts("window_end"),
    Column("windows", Integer, nullable=False, server_default="0"),
    _ts("started_at", nullable=False, now=True),
    _ts("finished_at"),
    Column("outcome", Text, nullable=False),
    Column("rows_inserted", BigInteger, nullable=False, server_default="0"),
    Column("rows_updated", BigInteger, nullable=False, server_default="0"),
    Column("rows_unchanged", BigInteger, nullable=False, server_default="0"),
    Column("rows_rejected", BigInteger, nullable=False, server_default="0"),
    Column("rows_deleted", BigInteger, nullable=False, server_default="0"),
    Column("requests", Integer, nullable=False, server_default="0"),
    _ts("high_water_mark"),
    Column("error", Text),
    Column("api_format", Text),  #: `csv`, `json` or `csv+json`: the forms that served the pass
    Index("ix_sync_runs_endpoint_started_at", "endpoint", "started_at"),
)

rejected_rows = Table(
    "rejected_rows",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("endpoint", Text, nullable=False),
    Column("raw", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw_digest", Text, nullable=False),
    _ts("first_seen", nullable=False, now=True),
    _ts("last_seen", nullable=False, now=True),
    Column("times_seen", Integer, nullable=False, server_default="1"),
    Column("run_id", Text),
    Index("ux_rejected_rows_endpoint_digest", "endpoint", "raw_digest", unique=True),
)

rate_budget = Table(
    "rate_budget",
    metadata,
    Column("key", Text, primary_key=True),
    # The recent grants' times, and those still in flight (see syncer.client.budget).
    Column("grants", ARRAY(DateTime(timezone=True)), nullable=False, server_default="{}"),
    Column("pending", ARRAY(DateTime(timezone=True)), nullable=False, server_default="{}"),
    _ts("not_before"),
    _ts("updated_at", nullable=False, now=True),
)
