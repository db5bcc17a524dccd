"""ai_code_changes.metadata_digest: md5 of the metadata JSON text the file rows were typed from.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 01:00:00

The raw path records it with the file rows it writes; a reload whose metadata text has the
same md5 keeps the stored file rows and their `files_digest` without parsing the JSON again
(parsing it was most of an unchanged reload's time). NULL (rows written before, or by the
typed or JSON path) only means the next reload parses the text. Adding a nullable column
without a default rewrites nothing, whatever the table's size.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ai_code_changes", sa.Column("metadata_digest", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("ai_code_changes", "metadata_digest")
