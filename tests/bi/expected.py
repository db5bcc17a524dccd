"""The analytics views' figures computed by hand, in Python, from the simulator's truth.

Written from the definitions in the README, not from the SQL: if the two disagree, one of
them is wrong.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import Any

Row = dict[str, Any]


def utc_day(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def commit_facts(commits: list[Row]) -> dict[str, Row]:
    out = {}
    for c in commits:
        n = {k: c[k] or 0 for k in c if k.endswith(("_lines_added", "_lines_deleted"))}
        ai_a = n["tab_lines_added"] + n["composer_lines_added"]
        ai_d = n["tab_lines_deleted"] + n["composer_lines_deleted"]
        non_a, non_d = c["non_ai_lines_added"], c["non_ai_lines_deleted"]
        ts = c["commit_ts"] or c["created_at"]
        scope = {True: "primary", False: "other", None: "unknown"}[c["is_primary_branch"]]
        out[c["commit_hash"]] = {
            "commit_hash": c["commit_hash"],
            "user_email": c["user_email"],
            "repo_name": c["repo_name"] or "Unknown",
            "branch_name": c["branch_name"],
            "branch_scope": scope,
            "commit_source": c.get("commit_source") or "unknown",
            "ts": ts,
            "day": utc_day(ts),
            "tab_lines_added": n["tab_lines_added"],
            "tab_lines_deleted": n["tab_lines_deleted"],
            "composer_lines_added": n["composer_lines_added"],
            "composer_lines_deleted": n["composer_lines_deleted"],
            "ai_lines_added": ai_a,
            "ai_lines_deleted": ai_d,
            "total_lines_added": n["total_lines_added"],
            "total_lines_deleted": n["total_lines_deleted"],
            "unattributed_lines_added": max(0, n["total_lines_added"] - ai_a)
            if non_a is None
            else non_a,
            "unattributed_lines_deleted": max(0, n["total_lines_deleted"] - ai_d)
            if non_d is None
            else non_d,
            "ai_assisted": ai_a > 0 or ai_d > 0,
            "week": monday(utc_day(ts)),
        }
    return out


def _line_sums(facts: list[Row]) -> Row:
    ai_a = sum(f["ai_lines_added"] for f in facts)
    tot_a = sum(f["total_lines_added"] for f in facts)
    ai_c = ai_a + sum(f["ai_lines_deleted"] for f in facts)
    tot_c = tot_a + sum(f["total_lines_deleted"] for f in facts)
    return {
        "commits": len(facts),
        "ai_assisted_commits": sum(f["ai_assisted"] for f in facts),
        "ai_lines_added": ai_a,
        "total_lines_added": tot_a,
        "ai_share_added": ratio(ai_a, tot_a),
        "ai_lines_changed": ai_c,
        "total_lines_changed": tot_c,
        "ai_share_changed": ratio(ai_c, tot_c),
    }


def _group(rows: Any, *keys: str) -> dict[tuple[Any, ...], list[Row]]:
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys)].append(r)
    return groups


def ai_share_daily(facts: dict[str, Row]) -> dict[tuple[Any, ...], Row]:
    out = {}
    for key, group in _group(facts.values(), "day", "branch_scope").items():
        out[key] = {
            **_line_sums(group),
            "tab_lines_added": sum(f["tab_lines_added"] for f in group),
            "composer_lines_added": sum(f["composer_lines_added"] for f in group),
            "unattributed_lines_added": sum(f["unattributed_lines_added"] for f in group),
        }
    return out


def repo_daily(facts: dict[str, Row]) -> dict[tuple[Any, ...], Row]:
    out = {}
    for key, group in _group(facts.values(), "day", "repo_name").items():
        users = len({f["user_email"] for f in group if f["user_email"] is not None})
        out[key] = {**_line_sums(group), "users": users}
    return out


def _change_rows(changes: list[Row]) -> list[Row]:
    return [
        {
            **c,
            "day": utc_day(c["created_at"]),
            "week": monday(utc_day(c["created_at"])),
            "source_": c["source"] or "(none)",
            "model_": c["model"] or "(none)",
        }
        for c in changes
    ]


def changes_daily(changes: list[Row]) -> dict[tuple[Any, ...], Row]:
    out = {}
    for key, group in _group(_change_rows(changes), "day", "source_", "model_").items():
        out[key] = {
            "changes": len(group),
            "lines_added": sum(c["total_lines_added"] or 0 for c in group),
            "lines_deleted": sum(c["total_lines_deleted"] or 0 for c in group),
            "users": len({c["user_email"] for c in group if c["user_email"] is not None}),
        }
    return out


def files_daily(changes: list[Row]) -> dict[tuple[Any, ...], Row]:
    entries = [
        {**c, "ext": (f["file_extension"] or "").lower() or "(none)", "file": f}
        for c in _change_rows(changes)
        for f in c["files"]
    ]
    out = {}
    for key, group in _group(entries, "day", "source_", "ext").items():
        out[key] = {
            "changes": len({e["change_id"] for e in group}),
            "files": len(group),
            "lines_added": sum(e["file"]["lines_added"] or 0 for e in group),
            "lines_deleted": sum(e["file"]["lines_deleted"] or 0 for e in group),
        }
    return out


def active_users_weekly(facts: dict[str, Row], changes: list[Row]) -> dict[date, Row]:
    changed: dict[date, set[str]] = defaultdict(set)
    committed: dict[date, set[str]] = defaultdict(set)
    anyone: dict[date, set[str]] = defaultdict(set)
    for c in _change_rows(changes):
        if c["user_email"] is not None:
            changed[c["week"]].add(c["user_email"])
            anyone[c["week"]].add(c["user_email"])
    for f in facts.values():
        if f["user_email"] is not None:
            anyone[f["week"]].add(f["user_email"])
            if f["ai_assisted"]:
                committed[f["week"]].add(f["user_email"])
    weeks = set(anyone) | {f["week"] for f in facts.values()}
    return {
        w: {
            "users_with_ai_changes": len(changed[w]),
            "users_with_ai_commits": len(committed[w]),
            "users_any": len(anyone[w]),
        }
        for w in weeks
    }


def favourite(models: list[str | None]) -> str | None:
    """The most frequent model; ties go to the first in code-point order; NULLs do not count."""
    counts = Counter(m for m in models if m is not None)
    if not counts:
        return None
    top = max(counts.values())
    return min(m for m, n in counts.items() if n == top)


def user_weekly(facts: dict[str, Row], changes: list[Row]) -> dict[tuple[Any, ...], Row]:
    commits = _group(facts.values(), "week", "user_email")
    accepted = _group(_change_rows(changes), "week", "user_email")
    out = {}
    for key in set(commits) | set(accepted):
        mine, theirs = commits.get(key, []), accepted.get(key, [])
        ai_a = sum(f["ai_lines_added"] for f in mine)
        tot_a = sum(f["total_lines_added"] for f in mine)
        out[key] = {
            "commits": len(mine),
            "ai_assisted_commits": sum(f["ai_assisted"] for f in mine),
            "ai_lines_added": ai_a,
            "ai_lines_deleted": sum(f["ai_lines_deleted"] for f in mine),
            "total_lines_added": tot_a,
            "total_lines_deleted": sum(f["total_lines_deleted"] for f in mine),
            "ai_share_added": ratio(ai_a, tot_a),
            "changes": len(theirs),
            "accepted_lines_added": sum(c["total_lines_added"] or 0 for c in theirs),
            "accepted_lines_deleted": sum(c["total_lines_deleted"] or 0 for c in theirs),
            "favourite_model": favourite([c["model"] for c in theirs]),
        }
    return out


def cohort(ai_lines_added: int, total_lines_added: int) -> str:
    """The README's convention: none, light (< 25%), moderate (< 50%), heavy."""
    if ai_lines_added == 0:
        return "none"
    if total_lines_added == 0 or ai_lines_added / total_lines_added >= 0.5:
        return "heavy"
    return "moderate" if ai_lines_added / total_lines_added >= 0.25 else "light"
