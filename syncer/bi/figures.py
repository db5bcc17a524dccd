"""The report's charts as plotly figures, built from rows of the `syncer_bi` views.

Every figure is a plain dict (plotly's JSON form), validated by `plotly.graph_objects`. Text
the API chose (repository names, emails, models, extensions) is HTML-escaped before it goes
into a figure: plotly.js reads a few tags in labels, and an escaped name is shown as written.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

Row = Mapping[str, Any]
Figure = dict[str, Any]

#: series beyond this many (models, extensions) are summed into "other"
TOP_SERIES = 8
#: repositories / users shown in the top charts
TOP_ROWS = 15
PALETTE = ("#4C6EF5", "#F76707", "#12B886", "#AE3EC9", "#FAB005", "#15AABF", "#E64980",
           "#82C91E", "#868E96", "#5C940D")  # fmt: skip


def label(value: object, missing: str = "(unknown)") -> str:
    """API text as a safe plotly label."""
    return html.escape(missing if value is None else str(value), quote=True)


def _figure(data: list[dict[str, Any]], title: str, **layout: Any) -> Figure:
    """A figure dict with the report's common look, validated by plotly."""
    import plotly.graph_objects as go

    base: dict[str, Any] = {
        "template": "none",
        "title": {"text": title, "x": 0.01},
        "colorway": list(PALETTE),
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "height": 380,
        "legend": {"orientation": "h", "y": -0.15},
        "hovermode": "x unified",
        "font": {"family": "system-ui, sans-serif", "size": 12},
    }
    fig = go.Figure(data=data, layout={**base, **layout})
    out: Figure = fig.to_plotly_json()
    return out


def _days(rows: Iterable[Row]) -> list[date]:
    return sorted({r["day"] for r in rows})


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def share_over_time(rows: Sequence[Row]) -> Figure:
    """AI share of committed lines per day: primary branch vs all branches, both measures."""
    days = _days(rows)
    primary = {r["day"]: r for r in rows if r["branch_scope"] == "primary"}
    sums: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        s = sums[r["day"]]
        for i, key in enumerate(
            ("ai_lines_added", "total_lines_added", "ai_lines_changed", "total_lines_changed")
        ):
            s[i] += r[key]

    def of_primary(key: str) -> list[float | None]:
        return [primary[d][key] if d in primary else None for d in days]

    series = [
        ("primary branch, added", of_primary("ai_share_added")),
        ("primary branch, changed", of_primary("ai_share_changed")),
        ("all branches, added", [_ratio(sums[d][0], sums[d][1]) for d in days]),
        ("all branches, changed", [_ratio(sums[d][2], sums[d][3]) for d in days]),
    ]
    data = [
        {"type": "scatter", "mode": "lines+markers", "name": name, "x": days, "y": ys,
         "line": {"dash": "dot" if "changed" in name else "solid"}}
        for name, ys in series
    ]  # fmt: skip
    return _figure(data, "AI share of committed lines", yaxis={"tickformat": ".0%"})


def lines_by_origin(rows: Sequence[Row]) -> Figure:
    """Committed lines added per day: Tab, Composer, unattributed (stacked)."""
    days = _days(rows)
    data = []
    for name, key in (
        ("Tab", "tab_lines_added"),
        ("Composer", "composer_lines_added"),
        ("unattributed", "unattributed_lines_added"),
    ):
        per_day: dict[date, int] = defaultdict(int)
        for r in rows:
            per_day[r["day"]] += r[key]
        data.append({"type": "bar", "name": name, "x": days, "y": [per_day[d] for d in days]})
    return _figure(data, "Committed lines added: Tab, Composer, unattributed", barmode="stack")


def top_bars(rows: Sequence[Row], title: str, missing: str) -> Figure:
    """Horizontal bars of AI lines added per name, with the share in the label."""
    rows = list(rows)[:TOP_ROWS][::-1]  # plotly draws the first category at the bottom
    names = [label(r["name"], missing) for r in rows]
    shares = [r["ai_share_added"] for r in rows]
    text = [
        "-" if s is None else f"{s:.0%} of {r['total_lines_added']:,}"
        for s, r in zip(shares, rows, strict=True)
    ]
    data = [{
        "type": "bar", "orientation": "h", "name": "AI lines added", "y": names,
        "x": [r["ai_lines_added"] for r in rows], "text": text, "textposition": "auto",
        "customdata": shares, "hovertemplate": "%{y}: %{x:,} AI lines (%{text})<extra></extra>",
    }]  # fmt: skip
    height = max(300, 60 + 26 * len(rows))
    return _figure(
        data,
        title,
        height=height,
        hovermode="closest",
        margin={"l": 220, "r": 20, "t": 50, "b": 40},
    )


def mix_over_time(rows: Sequence[Row], key: str, value: str, title: str) -> Figure:
    """A 100% stacked weekly mix of `key` (the top few; the rest as 'other')."""
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        totals[r[key]] += r[value]
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    top = set(ranked[:TOP_SERIES])
    weeks = sorted({r["week"] for r in rows})
    cells: dict[tuple[str, date], int] = defaultdict(int)
    for r in rows:
        cells[r[key] if r[key] in top else "other", r["week"]] += r[value]
    names = [k for k in ranked if k in top] + (["other"] if len(ranked) > TOP_SERIES else [])
    data = [
        {"type": "bar", "name": label(n), "x": weeks, "y": [cells[n, w] for w in weeks]}
        for n in names
    ]
    return _figure(data, title, barmode="stack", barnorm="percent", yaxis={"ticksuffix": "%"})


def weekly_users(rows: Sequence[Row]) -> Figure:
    """Distinct users per week: with AI changes, with AI commits, with anything."""
    weeks = [r["week"] for r in rows]
    data = [
        {"type": "scatter", "mode": "lines+markers", "name": name, "x": weeks,
         "y": [r[key] for r in rows]}
        for name, key in (
            ("with AI changes", "users_with_ai_changes"),
            ("with AI commits", "users_with_ai_commits"),
            ("any activity", "users_any"),
        )
    ]  # fmt: skip
    return _figure(data, "Weekly active users", yaxis={"rangemode": "tozero"})


def cohorts(rows: Sequence[Row]) -> Figure:
    """Users per adoption cohort per week (stacked)."""
    weeks = sorted({r["week"] for r in rows})
    counts = {(r["cohort"], r["week"]): r["users"] for r in rows}
    data = [
        {"type": "bar", "name": c, "x": weeks, "y": [counts.get((c, w), 0) for w in weeks]}
        for c in ("none", "light", "moderate", "heavy")
    ]
    return _figure(data, "Adoption cohorts (users per week)", barmode="stack")
