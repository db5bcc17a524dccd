"""sync_runs.rows_deleted: stored rows a pass pruned because the API no longer serves them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 22:00:00

Rescans, backfills and `verify --repair --prune` may delete rows the API withdrew; the run log
counts them next to the inserted and updated rows. Existing runs deleted nothing: 0.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sync_runs",
        sa.Column("rows_deleted", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("sync_runs", "rows_deleted")
