"""The team-wide rate budget: one row per API path holding its recent request grants.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:10:00

Cursor limits requests per team and endpoint, so every syncer process of a team (the daemon,
a `syncer backfill` beside it) books its requests in this table under a row lock. `grants`
holds the recent requests' times; those still in flight (not yet answered, so possibly not yet
counted by the server) are also listed in `pending` by the instant they were booked.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_budget",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column(
            "grants",
            postgresql.ARRAY(sa.DateTime(timezone=True)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "pending",
            postgresql.ARRAY(sa.DateTime(timezone=True)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("rate_budget")
