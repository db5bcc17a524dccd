"""Schema `syncer_bi`: the analytics views BI tools read instead of the raw tables.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 22:00:00

Every metric's subtlety is decided here once: non-AI lines are *unattributed* (the API's
`non_ai_*`, else what total minus Tab and Composer leaves, never below zero); a branch is
`primary`, `other` or `unknown`; a commit without a repository is `'Unknown'` (as Cursor's
dashboard labels it); a commit belongs to the UTC day of `commit_ts`, else `created_at`.
Dates are computed with `AT TIME ZONE 'UTC'`, so they do not depend on the session's TimeZone.
Missing line counts count as 0. Shares are plain ratios (NULL when the denominator is 0),
never clamped: the API can report more AI lines than total lines.

The views are owned by the migrating role and read the raw tables with its rights, which is
what lets `syncer grant-read` give a role these views and nothing else. The SQL is written out
here (not read from the package) so that this revision means the same thing forever; a later
change to a view is a later revision.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_UTC_DAY = "(({0}) AT TIME ZONE 'UTC')::date"
_UTC_WEEK = "date_trunc('week', ({0}) AT TIME ZONE 'UTC')::date"

#: (name, comment, query) in creation order; later views may read earlier ones.
VIEWS: list[tuple[str, str, str]] = [
    (
        "commit_facts",
        "One row per commit with every metric's subtlety decided: see the README.",
        f"""
        WITH c AS (
            SELECT commit_hash, user_email, repo_name, branch_name, is_primary_branch,
                   commit_source, COALESCE(commit_ts, created_at) AS ts,
                   COALESCE(tab_lines_added, 0) AS tab_a,
                   COALESCE(tab_lines_deleted, 0) AS tab_d,
                   COALESCE(composer_lines_added, 0) AS comp_a,
                   COALESCE(composer_lines_deleted, 0) AS comp_d,
                   COALESCE(total_lines_added, 0) AS total_a,
                   COALESCE(total_lines_deleted, 0) AS total_d,
                   non_ai_lines_added, non_ai_lines_deleted
            FROM public.ai_commits
        )
        SELECT commit_hash,
               user_email,
               COALESCE(NULLIF(repo_name, ''), 'Unknown') AS repo_name,
               branch_name,
               CASE is_primary_branch WHEN true THEN 'primary' WHEN false THEN 'other'
                    ELSE 'unknown' END AS branch_scope,
               COALESCE(NULLIF(commit_source, ''), 'unknown') AS commit_source,
               ts,
               {_UTC_DAY.format("ts")} AS day,
               tab_a AS tab_lines_added,
               tab_d AS tab_lines_deleted,
               comp_a AS composer_lines_added,
               comp_d AS composer_lines_deleted,
               tab_a + comp_a AS ai_lines_added,
               tab_d + comp_d AS ai_lines_deleted,
               total_a AS total_lines_added,
               total_d AS total_lines_deleted,
               COALESCE(non_ai_lines_added, GREATEST(0, total_a - tab_a - comp_a))
                   AS unattributed_lines_added,
               COALESCE(non_ai_lines_deleted, GREATEST(0, total_d - tab_d - comp_d))
                   AS unattributed_lines_deleted,
               (tab_a + comp_a > 0 OR tab_d + comp_d > 0) AS ai_assisted,
               {_UTC_WEEK.format("ts")} AS week
        FROM c
        """,
    ),
    (
        "ai_share_daily",
        "AI share of committed lines per UTC day and branch scope; sum the scopes for all.",
        """
        SELECT day, branch_scope,
               count(*) AS commits,
               count(*) FILTER (WHERE ai_assisted) AS ai_assisted_commits,
               sum(ai_lines_added)::bigint AS ai_lines_added,
               sum(total_lines_added)::bigint AS total_lines_added,
               sum(ai_lines_added)::float8 / NULLIF(sum(total_lines_added), 0)::float8
                   AS ai_share_added,
               sum(ai_lines_added + ai_lines_deleted)::bigint AS ai_lines_changed,
               sum(total_lines_added + total_lines_deleted)::bigint AS total_lines_changed,
               sum(ai_lines_added + ai_lines_deleted)::float8
                   / NULLIF(sum(total_lines_added + total_lines_deleted), 0)::float8
                   AS ai_share_changed,
               sum(tab_lines_added)::bigint AS tab_lines_added,
               sum(composer_lines_added)::bigint AS composer_lines_added,
               sum(unattributed_lines_added)::bigint AS unattributed_lines_added
        FROM syncer_bi.commit_facts
        GROUP BY day, branch_scope
        """,
    ),
    (
        "changes_daily",
        "Accepted AI changes per UTC day, source and model ('(none)' when NULL).",
        f"""
        SELECT {_UTC_DAY.format("created_at")} AS day,
               COALESCE(NULLIF(source, ''), '(none)') AS source,
               COALESCE(NULLIF(model, ''), '(none)') AS model,
               count(*) AS changes,
               COALESCE(sum(total_lines_added), 0)::bigint AS lines_added,
               COALESCE(sum(total_lines_deleted), 0)::bigint AS lines_deleted,
               count(DISTINCT user_email) AS users
        FROM public.ai_code_changes
        GROUP BY 1, 2, 3
        """,
    ),
    (
        "files_daily",
        "Files touched by accepted AI changes per UTC day, source and lower-case extension.",
        f"""
        SELECT {_UTC_DAY.format("c.created_at")} AS day,
               COALESCE(NULLIF(c.source, ''), '(none)') AS source,
               COALESCE(NULLIF(lower(f.file_extension), ''), '(none)') AS file_extension,
               count(DISTINCT c.change_id) AS changes,
               count(*) AS files,
               COALESCE(sum(f.lines_added), 0)::bigint AS lines_added,
               COALESCE(sum(f.lines_deleted), 0)::bigint AS lines_deleted
        FROM public.ai_code_change_files f
        JOIN public.ai_code_changes c USING (change_id)
        GROUP BY 1, 2, 3
        """,
    ),
    (
        "active_users_weekly",
        "Distinct users per UTC week (Monday): with AI changes, with AI commits, with anything.",
        f"""
        WITH activity AS (
            SELECT week, user_email, false AS is_change, ai_assisted
            FROM syncer_bi.commit_facts
            UNION ALL
            SELECT {_UTC_WEEK.format("created_at")}, user_email, true, true
            FROM public.ai_code_changes
        )
        SELECT week,
               count(DISTINCT user_email) FILTER (WHERE is_change) AS users_with_ai_changes,
               count(DISTINCT user_email) FILTER (WHERE NOT is_change AND ai_assisted)
                   AS users_with_ai_commits,
               count(DISTINCT user_email) AS users_any
        FROM activity
        GROUP BY week
        """,
    ),
    (
        "repo_daily",
        "Committed lines per UTC day and repository ('Unknown' when the API gave none).",
        """
        SELECT day, repo_name,
               count(*) AS commits,
               count(*) FILTER (WHERE ai_assisted) AS ai_assisted_commits,
               count(DISTINCT user_email) AS users,
               sum(ai_lines_added)::bigint AS ai_lines_added,
               sum(total_lines_added)::bigint AS total_lines_added,
               sum(ai_lines_added)::float8 / NULLIF(sum(total_lines_added), 0)::float8
                   AS ai_share_added,
               sum(ai_lines_added + ai_lines_deleted)::bigint AS ai_lines_changed,
               sum(total_lines_added + total_lines_deleted)::bigint AS total_lines_changed,
               sum(ai_lines_added + ai_lines_deleted)::float8
                   / NULLIF(sum(total_lines_added + total_lines_deleted), 0)::float8
                   AS ai_share_changed
        FROM syncer_bi.commit_facts
        GROUP BY day, repo_name
        """,
    ),
    (
        "user_weekly",
        "Per user and UTC week: commits, committed and accepted AI lines, favourite model.",
        f"""
        WITH commits AS (
            SELECT week, user_email, count(*) AS commits,
                   count(*) FILTER (WHERE ai_assisted) AS ai_assisted_commits,
                   sum(ai_lines_added) AS ai_lines_added,
                   sum(ai_lines_deleted) AS ai_lines_deleted,
                   sum(total_lines_added) AS total_lines_added,
                   sum(total_lines_deleted) AS total_lines_deleted
            FROM syncer_bi.commit_facts GROUP BY week, user_email
        ), changes AS (
            SELECT {_UTC_WEEK.format("created_at")} AS week, user_email, count(*) AS changes,
                   COALESCE(sum(total_lines_added), 0) AS accepted_lines_added,
                   COALESCE(sum(total_lines_deleted), 0) AS accepted_lines_deleted,
                   mode() WITHIN GROUP (ORDER BY model COLLATE "C") AS favourite_model
            FROM public.ai_code_changes GROUP BY 1, 2
        ), both_ AS (
            SELECT week, user_email, commits, ai_assisted_commits, ai_lines_added,
                   ai_lines_deleted, total_lines_added, total_lines_deleted,
                   0 AS changes, 0 AS accepted_lines_added, 0 AS accepted_lines_deleted,
                   NULL::text AS favourite_model
            FROM commits
            UNION ALL
            SELECT week, user_email, 0, 0, 0, 0, 0, 0, changes, accepted_lines_added,
                   accepted_lines_deleted, favourite_model
            FROM changes
        )
        SELECT week, user_email,
               sum(commits)::bigint AS commits,
               sum(ai_assisted_commits)::bigint AS ai_assisted_commits,
               sum(ai_lines_added)::bigint AS ai_lines_added,
               sum(ai_lines_deleted)::bigint AS ai_lines_deleted,
               sum(total_lines_added)::bigint AS total_lines_added,
               sum(total_lines_deleted)::bigint AS total_lines_deleted,
               sum(ai_lines_added)::float8 / NULLIF(sum(total_lines_added), 0)::float8
                   AS ai_share_added,
               sum(changes)::bigint AS changes,
               sum(accepted_lines_added)::bigint AS accepted_lines_added,
               sum(accepted_lines_deleted)::bigint AS accepted_lines_deleted,
               max(favourite_model) AS favourite_model
        FROM both_
        GROUP BY week, user_email
        """,
    ),
    (
        "adoption_weekly",
        "Adoption cohort per user and UTC week, by the AI share of committed added lines: "
        "none (no AI line), light (< 25%), moderate (25% to < 50%), heavy (>= 50%).",
        """
        SELECT week, user_email, commits, ai_lines_added, total_lines_added, ai_share_added,
               CASE WHEN ai_lines_added = 0 THEN 'none'
                    WHEN ai_share_added IS NULL OR ai_share_added >= 0.5 THEN 'heavy'
                    WHEN ai_share_added >= 0.25 THEN 'moderate'
                    ELSE 'light' END AS cohort
        FROM syncer_bi.user_weekly
        WHERE commits > 0
        """,
    ),
    (
        "ai_lines_proxy_weekly",
        "A PROXY, not an acceptance rate: AI lines committed per AI line accepted, per user "
        "and UTC week. True acceptance needs endpoints syncer does not sync.",
        """
        SELECT week, user_email,
               accepted_lines_added, ai_lines_added AS committed_ai_lines_added,
               ai_lines_added::float8 / NULLIF(accepted_lines_added, 0)::float8
                   AS committed_per_accepted_proxy
        FROM syncer_bi.user_weekly
        """,
    ),
    (
        "freshness",
        "Per endpoint: high-water mark, its lag, the last finished run, and row counts.",
        """
        SELECT e.endpoint,
               s.high_water_mark,
               extract(epoch FROM now() - s.high_water_mark)::float8 AS lag_seconds,
               r.command AS last_run_command,
               r.started_at AS last_run_started_at,
               r.finished_at AS last_run_finished_at,
               r.outcome AS last_run_outcome,
               ok.finished_at AS last_success_at,
               CASE e.endpoint
                   WHEN 'commits' THEN (SELECT count(*) FROM public.ai_commits)
                   ELSE (SELECT count(*) FROM public.ai_code_changes) END AS row_count
        FROM (VALUES ('commits'), ('changes')) AS e (endpoint)
        LEFT JOIN public.sync_state s ON s.endpoint = e.endpoint
        LEFT JOIN LATERAL (
            SELECT command, started_at, finished_at, outcome FROM public.sync_runs
            WHERE endpoint = e.endpoint AND finished_at IS NOT NULL AND outcome <> 'skipped'
            ORDER BY finished_at DESC, id DESC LIMIT 1
        ) r ON true
        LEFT JOIN LATERAL (
            SELECT finished_at FROM public.sync_runs
            WHERE endpoint = e.endpoint AND outcome = 'success'
            ORDER BY finished_at DESC, id DESC LIMIT 1
        ) ok ON true
        """,
    ),
]


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS syncer_bi")
    op.execute(
        "COMMENT ON SCHEMA syncer_bi IS 'syncer analytics views for BI tools (see the README)'"
    )
    for name, comment, query in VIEWS:
        op.execute(f"CREATE VIEW syncer_bi.{name} AS {query}")
        quoted = comment.replace("'", "''")
        op.execute(f"COMMENT ON VIEW syncer_bi.{name} IS '{quoted}'")


def downgrade() -> None:
    for name, _, _ in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS syncer_bi.{name}")
    # Not CASCADE: a user's own objects in the schema stop the downgrade rather than vanish.
    op.execute("DROP SCHEMA IF EXISTS syncer_bi")
