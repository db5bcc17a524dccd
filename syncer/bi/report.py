"""`syncer report`: one self-contained HTML file of charts, read from the `syncer_bi` views.

The file opens offline and can be mailed around: plotly.js is inlined (it ships inside the
plotly wheel), styles are inline, no font or script is fetched. Figures travel as JSON in
`<script type="application/json">` blocks with `<`, `>` and `&` written as `\\u` escapes, so
no text from the API can close a tag, whatever it contains.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from string import Template
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from syncer import __version__
from syncer.bi import figures
from syncer.errors import ConfigError

INSTALL_HINT = "syncer report needs plotly: pip install 'syncer[report]'"

#: (chart id, heading, what it shows) in page order
CHARTS: list[tuple[str, str, str]] = [
    ("share", "AI share of committed lines",
     "Tab + Composer lines ÷ total lines of the day's commits. Solid: lines added (the measure "
     "DevLake and Faros use); dotted: lines added + deleted (the measure Cursor's dashboard "
     "uses). Primary branch only, and all branches together."),
    ("origin", "Where committed lines came from",
     "Lines added per day by Tab, by Composer, and unattributed (the API's non-AI lines: "
     "typed by hand, pasted, or from tools Cursor does not see)."),
    ("repos", "Top repositories by AI lines",
     "AI lines added in the period per repository; the label gives the AI share of the "
     "repository's lines added. 'Unknown': commits without repository information."),
    ("users", "Top users by AI lines",
     "AI lines added in the period per user, with the AI share of their lines added."),
    ("models", "Model mix",
     "Share of accepted AI changes per model and week; '(none)' is a change without a model "
     "(usually Tab)."),
    ("extensions", "File-extension mix",
     "Share of lines added by accepted AI changes per file extension and week."),
    ("wau", "Weekly active users",
     "Distinct users per week (Monday to Sunday, UTC) with an accepted AI change, with an "
     "AI-assisted commit, and with any activity."),
    ("cohorts", "Adoption cohorts",
     "Users per week by the AI share of their committed lines added: none (0), light "
     "(< 25%), moderate (25-50%), heavy (50% or more)."),
]  # fmt: skip

DEFINITIONS = [
    ("day / week", "UTC date of the commit's commit_ts (else created_at) or of the change's "
     "created_at; weeks start on Monday."),
    ("AI lines", "Tab + Composer lines of a commit as the API reports them."),
    ("unattributed lines", "The API's non_ai_* counts, else total − AI, never below 0. Not "
     "'human' lines: only lines Cursor cannot attribute."),
    ("AI share", "AI lines ÷ total lines, not clamped: the API can report more AI lines than "
     "lines committed, so a share can exceed 100%. Empty when there were no lines."),
    ("branch scope", "primary, other, or unknown when the API does not say."),
    ("users", "Distinct e-mail addresses."),
]  # fmt: skip

_QUERIES = {
    "share": "SELECT * FROM syncer_bi.ai_share_daily WHERE day >= :since ORDER BY day",
    "repos": "SELECT repo_name AS name, sum(ai_lines_added)::bigint AS ai_lines_added, "
    "sum(total_lines_added)::bigint AS total_lines_added, sum(ai_lines_added)::float8 / "
    "NULLIF(sum(total_lines_added), 0)::float8 AS ai_share_added FROM syncer_bi.repo_daily "
    "WHERE day >= :since GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 15",
    "users": "SELECT user_email AS name, sum(ai_lines_added)::bigint AS ai_lines_added, "
    "sum(total_lines_added)::bigint AS total_lines_added, sum(ai_lines_added)::float8 / "
    "NULLIF(sum(total_lines_added), 0)::float8 AS ai_share_added FROM syncer_bi.commit_facts "
    "WHERE day >= :since GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 15",
    "models": "SELECT date_trunc('week', day)::date AS week, model, "
    "sum(changes)::bigint AS changes FROM syncer_bi.changes_daily WHERE day >= :since "
    "GROUP BY 1, 2",
    "extensions": "SELECT date_trunc('week', day)::date AS week, file_extension, "
    "sum(lines_added)::bigint AS lines_added FROM syncer_bi.files_daily WHERE day >= :since "
    "GROUP BY 1, 2",
    "wau": "SELECT * FROM syncer_bi.active_users_weekly WHERE week >= :week ORDER BY week",
    "cohorts": "SELECT week, cohort, count(*)::bigint AS users FROM syncer_bi.adoption_weekly "
    "WHERE week >= :week GROUP BY 1, 2",
    "freshness": "SELECT * FROM syncer_bi.freshness ORDER BY endpoint",
}


@dataclass
class ReportData:
    """Rows of the views for one period."""

    since: date
    generated_at: datetime
    rows: dict[str, list[dict[str, Any]]]


async def load(conn: AsyncConnection, since: date) -> ReportData:
    """Read every chart's rows; weekly views start at the Monday of `since`'s week."""
    week = since - timedelta(days=since.weekday())
    rows = {}
    for name, sql in _QUERIES.items():
        result = await conn.execute(text(sql), {"since": since, "week": week})
        rows[name] = [dict(r) for r in result.mappings()]
    return ReportData(since, datetime.now(timezone.utc), rows)


def build_figures(data: ReportData) -> dict[str, figures.Figure]:
    """Chart id → plotly figure dict."""
    r = data.rows
    return {
        "share": figures.share_over_time(r["share"]),
        "origin": figures.lines_by_origin(r["share"]),
        "repos": figures.top_bars(r["repos"], "Top repositories by AI lines added", "Unknown"),
        "users": figures.top_bars(r["users"], "Top users by AI lines added", "(unknown)"),
        "models": figures.mix_over_time(r["models"], "model", "changes", "Model mix (changes)"),
        "extensions": figures.mix_over_time(
            r["extensions"], "file_extension", "lines_added", "File-extension mix (lines added)"
        ),
        "wau": figures.weekly_users(r["wau"]),
        "cohorts": figures.cohorts(r["cohorts"]),
    }


def _json(value: Any) -> str:
    """JSON that is safe inside a <script> element."""

    def default(o: Any) -> Any:
        if isinstance(o, date | datetime):
            return o.isoformat()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    raw = json.dumps(value, default=default, separators=(",", ":"), allow_nan=False)
    return raw.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, float):
        return f"{value / 3600:.1f} h"
    return html.escape(str(value))


def _freshness_rows(rows: list[dict[str, Any]]) -> str:
    columns = ("endpoint", "high_water_mark", "lag_seconds", "last_run_command",
               "last_run_finished_at", "last_run_outcome", "row_count")  # fmt: skip
    return "\n".join(
        "<tr>" + "".join(f"<td>{_cell(r[c])}</td>" for c in columns) + "</tr>" for r in rows
    )


def render(data: ReportData) -> str:
    """The whole HTML document."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    plotly_js = get_plotlyjs().replace("</script", "<\\/script")
    figs = build_figures(data)
    sections = "\n".join(
        f'<section><h2>{html.escape(title)}</h2><p class="note">{html.escape(note)}</p>'
        f'<div class="chart" id="chart-{cid}"></div>'
        f'<script type="application/json" class="figure" data-chart="{cid}">'
        f"{_json(figs[cid])}</script></section>"
        for cid, title, note in CHARTS
    )
    definitions = "\n".join(
        f"<dt>{html.escape(term)}</dt><dd>{html.escape(text_)}</dd>" for term, text_ in DEFINITIONS
    )
    template = Template(resources.files("syncer.bi").joinpath("templates/report.html").read_text())
    return template.substitute(
        since=data.since.isoformat(),
        generated=data.generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        version=html.escape(__version__),
        sections=sections,
        freshness=_freshness_rows(data.rows["freshness"]),
        definitions=definitions,
        plotly_js=plotly_js,
    )
