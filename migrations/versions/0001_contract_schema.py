"""The contract schema: synced tables, child file rows, sync state, run log, quarantine.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22 07:45:29.388636
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ai_code_changes",
        sa.Column("change_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("user_email", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("total_lines_added", sa.BigInteger(), nullable=True),
        sa.Column("total_lines_deleted", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("files_digest", sa.Text(), nullable=True),
        sa.Column(
            "synced_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("change_id"),
    )
    op.create_index(
        "ix_ai_code_changes_created_at", "ai_code_changes", ["created_at"], unique=False
    )
    op.create_index(
        "ix_ai_code_changes_user_email", "ai_code_changes", ["user_email"], unique=False
    )
    op.create_table(
        "ai_commits",
        sa.Column("commit_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("user_email", sa.Text(), nullable=True),
        sa.Column("repo_name", sa.Text(), nullable=True),
        sa.Column("branch_name", sa.Text(), nullable=True),
        sa.Column("is_primary_branch", sa.Boolean(), nullable=True),
        sa.Column("total_lines_added", sa.BigInteger(), nullable=True),
        sa.Column("total_lines_deleted", sa.BigInteger(), nullable=True),
        sa.Column("tab_lines_added", sa.BigInteger(), nullable=True),
        sa.Column("tab_lines_deleted", sa.BigInteger(), nullable=True),
        sa.Column("composer_lines_added", sa.BigInteger(), nullable=True),
        sa.Column("composer_lines_deleted", sa.BigInteger(), nullable=True),
        sa.Column("non_ai_lines_added", sa.BigInteger(), nullable=True),
        sa.Column("non_ai_lines_deleted", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("commit_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "synced_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("commit_hash"),
    )
    op.create_index("ix_ai_commits_commit_ts", "ai_commits", ["commit_ts"], unique=False)
    op.create_index("ix_ai_commits_created_at", "ai_commits", ["created_at"], unique=False)
    op.create_index("ix_ai_commits_repo_name", "ai_commits", ["repo_name"], unique=False)
    op.create_index("ix_ai_commits_user_email", "ai_commits", ["user_email"], unique=False)
    op.create_table(
        "rejected_rows",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw_digest", sa.Text(), nullable=False),
        sa.Column(
            "first_seen",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_seen", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("times_seen", sa.Integer(), server_default="1", nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_rejected_rows_endpoint_digest", "rejected_rows", ["endpoint", "raw_digest"], unique=True
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("windows", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("rows_inserted", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_updated", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_unchanged", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_rejected", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("requests", sa.Integer(), server_default="0", nullable=False),
        sa.Column("high_water_mark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_sync_runs_endpoint_started_at", "sync_runs", ["endpoint", "started_at"], unique=False
    )
    op.create_table(
        "sync_state",
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("high_water_mark", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("endpoint"),
    )
    op.create_table(
        "ai_code_change_files",
        sa.Column("change_id", sa.Text(), nullable=False),
        sa.Column("file_index", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("file_extension", sa.Text(), nullable=True),
        sa.Column("lines_added", sa.BigInteger(), nullable=True),
        sa.Column("lines_deleted", sa.BigInteger(), nullable=True),
        sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.ForeignKeyConstraint(["change_id"], ["ai_code_changes.change_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("change_id", "file_index"),
    )
    op.create_index(
        "ix_ai_code_change_files_file_extension",
        "ai_code_change_files",
        ["file_extension"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_ai_code_change_files_file_extension", table_name="ai_code_change_files")
    op.drop_table("ai_code_change_files")
    op.drop_table("sync_state")
    op.drop_index("ix_sync_runs_endpoint_started_at", table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_index("ux_rejected_rows_endpoint_digest", table_name="rejected_rows")
    op.drop_table("rejected_rows")
    op.drop_index("ix_ai_commits_user_email", table_name="ai_commits")
    op.drop_index("ix_ai_commits_repo_name", table_name="ai_commits")
    op.drop_index("ix_ai_commits_created_at", table_name="ai_commits")
    op.drop_index("ix_ai_commits_commit_ts", table_name="ai_commits")
    op.drop_table("ai_commits")
    op.drop_index("ix_ai_code_changes_user_email", table_name="ai_code_changes")
    op.drop_index("ix_ai_code_changes_created_at", table_name="ai_code_changes")
    op.drop_table("ai_code_changes")
