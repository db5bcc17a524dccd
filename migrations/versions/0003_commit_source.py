"""ai_commits.commit_source: where a commit was made (`ide`, `cli`, `cloud`, …).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 21:50:00

The real API sends `commitSource` (JSON) / `commit_source` (CSV), which our document does not
list, so earlier versions kept it in `extra`. The column is added nullable (older rows and the
document have no source) and any value already kept in `extra` moves into it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ai_commits", sa.Column("commit_source", sa.Text(), nullable=True))
    op.execute(
        "UPDATE ai_commits SET "
        "commit_source = COALESCE(extra->>'commit_source', extra->>'commitSource'), "
        "extra = NULLIF(extra - 'commit_source' - 'commitSource', '{}'::jsonb) "
        "WHERE extra ?| array['commit_source', 'commitSource']"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE ai_commits SET extra = COALESCE(extra, '{}'::jsonb) "
        "|| jsonb_build_object('commit_source', commit_source) WHERE commit_source IS NOT NULL"
    )
    op.drop_column("ai_commits", "commit_source")
