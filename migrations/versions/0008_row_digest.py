"""row_digest on ai_commits and ai_code_changes: md5 of the CSV record text a row was typed from.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 05:00:00

The raw path records it with each row it writes; a reload that serves a row with the same text
neither types nor compares it again, only counts it unchanged (typing the text was most of an
unchanged reload's time once nothing was rewritten). NULL (rows written before, or by the
typed or JSON path) only means the next reload compares the row by value. Adding a nullable
column without a default rewrites nothing, whatever the table's size.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TABLES = ("ai_commits", "ai_code_changes")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("row_digest", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        op.drop_column(table, "row_digest")
