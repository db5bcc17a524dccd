"""sync_runs.api_format: which of the API's forms served a pass (`csv`, `json`, `csv+json`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 22:20:00

With CURSOR_API_FORMAT=auto an endpoint whose CSV route is not served is read through the JSON
pages; `syncer status` shows which form each endpoint was last read through. NULL for passes
logged before this column, or that made no request.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sync_runs", sa.Column("api_format", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("sync_runs", "api_format")
