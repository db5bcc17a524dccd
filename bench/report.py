"""The benchmark's printed report: each figure with its yardstick, the ratio, and the target."""

from __future__ import annotations

import statistics
from collections.abc import Callable

Figures = dict[str, float]
_STAGE_NAMES = (
    ("http_cut", "http+cut"),
    ("copy_stage", "copy"),
    ("lookup", "lookup"),
    ("typing", "typing"),
    ("upsert", "upsert"),
    ("files", "files"),
    ("commit", "commit"),
    ("indexes", "indexes"),
    ("other", "other"),
)


def _median(rounds: list[Figures], f: Callable[[Figures], float]) -> float:
    return statistics.median(f(r) for r in rounds)


def _stages(rounds: list[Figures], name: str) -> str:
    parts = [f"wall {_median(rounds, lambda r: r[f'{name}_wall_s']):.2f}s"]
    for key, label in _STAGE_NAMES:
        column = f"{name}_{key}"
        parts.append(f"{label} {statistics.median(r[column] for r in rounds):.2f}")
    cpu = _median(rounds, lambda r: r[f"{name}_cpu_s"])
    rss = _median(rounds, lambda r: r[f"{name}_rss_mb"])
    return " | ".join(parts) + f"; process CPU {cpu:.1f}s, peak RSS {rss:.0f} MB"


def print_report(rounds: list[Figures], indent: str = "  ") -> None:
    """Print the figures (medians over `rounds`; ratios are the medians of each round's)."""

    def m(key: str) -> float:
        return _median(rounds, lambda r: r[key])

    def ratio(key: str, yardstick: str) -> float:
        return _median(rounds, lambda r: r[key] / r[yardstick])

    def line(label: str, value: str, note: str = "") -> None:
        print(f"{indent}{label:<52}{value:>16}  {note}".rstrip())

    rows = m("c_first_rows")
    print(f"{indent[:-2]}commits ({rows:,.0f} rows)")
    line("\\copy into a keyed table", f"{m('y_commits_keyed'):,.0f} rows/s", "yardstick")
    line(
        "\\copy into LIKE ai_commits INCLUDING ALL",
        f"{m('y_commits_same'):,.0f} rows/s",
        "yardstick (same schema)",
    )
    line(
        "syncer backfill, first load",
        f"{m('c_first_rate'):,.0f} rows/s",
        f"{ratio('c_first_rate', 'y_commits_same'):.2f}x same-schema \\copy (target >= 0.9), "
        f"{ratio('c_first_rate', 'y_commits_keyed'):.2f}x keyed",
    )
    print(f"{indent}    {_stages(rounds, 'c_first')}")
    line(
        "syncer backfill, unchanged reload",
        f"{m('c_reload_rate'):,.0f} rows/s",
        f"{ratio('c_reload_rate', 'y_commits_keyed'):.2f}x keyed \\copy (target >= 0.8); "
        f"rows rewritten {m('c_reload_rewritten'):,.0f} (target 0)",
    )
    print(f"{indent}    {_stages(rounds, 'c_reload')}")
    line(
        "pure SQL unchanged reload (upsert of what differs)",
        f"{m('y_commits_reload'):,.0f} rows/s",
        f"{ratio('y_commits_reload', 'y_commits_keyed'):.2f}x keyed \\copy: the server alone; "
        f"rewritten {m('y_commits_reload_rewritten'):,.0f}",
    )

    print(f"{indent[:-2]}changes ({m('h_first_rows'):,.0f} rows, {m('h_files'):,.0f} file rows)")
    line(
        "pure SQL: \\copy to staging, INSERT…SELECT both",
        f"{m('y_changes_sql'):,.0f} rows/s",
        f"yardstick (same schema, foreign key on; {m('y_files'):,.0f} file rows)",
    )
    line(
        "\\copy into a keyed table (metadata as jsonb)",
        f"{m('y_changes_keyed'):,.0f} rows/s",
        "yardstick",
    )
    line(
        "syncer backfill, first load",
        f"{m('h_first_rate'):,.0f} rows/s",
        f"{ratio('h_first_rate', 'y_changes_sql'):.2f}x pure SQL (target >= 0.9 "
        "and >= 40,000 rows/s)",
    )
    print(f"{indent}    {_stages(rounds, 'h_first')}")
    line(
        "syncer backfill, unchanged reload",
        f"{m('h_reload_rate'):,.0f} rows/s",
        f"{ratio('h_reload_rate', 'y_changes_keyed'):.2f}x keyed \\copy (target >= 0.8); "
        f"rewritten: rows {m('h_reload_rewritten'):,.0f}, "
        f"file rows {m('h_reload_files_rewritten'):,.0f} (target 0, 0)",
    )
    print(f"{indent}    {_stages(rounds, 'h_reload')}")
    line(
        "pure SQL unchanged reload (upsert of what differs)",
        f"{m('y_changes_reload'):,.0f} rows/s",
        f"{ratio('y_changes_reload', 'y_changes_keyed'):.2f}x keyed \\copy: the server alone; "
        f"rewritten {m('y_changes_reload_rewritten'):,.0f}",
    )

    print(f"{indent[:-2]}memory and the incremental pass")
    line(
        "peak RSS, commits",
        f"{m('s_commits_rss_mb'):.0f} / {m('c_first_rss_mb'):.0f} MB",
        f"at {m('s_commits_rows'):,.0f} / {rows:,.0f} rows (target < 100 MB, flat)",
    )
    line(
        "peak RSS, changes",
        f"{m('s_changes_rss_mb'):.0f} / {m('h_first_rss_mb'):.0f} MB",
        f"at {m('s_changes_rows'):,.0f} / {m('h_first_rows'):,.0f} rows (target < 100 MB, flat)",
    )
    line(
        "syncer sync, engine time (not the API's)",
        f"{m('inc_commits_engine_ms'):.0f} / {m('inc_changes_engine_ms'):.0f} ms",
        f"commits / changes; {m('inc_new'):,.0f} new rows of {m('inc_rows'):,.0f} read "
        "(target < 50 ms)",
    )
    line(
        "syncer run (daemon), engine time of a pass",
        f"{m('daemon_commits_engine_ms'):.0f} / {m('daemon_changes_engine_ms'):.0f} ms",
        f"commits / changes; median of {m('daemon_passes'):.0f} warm passes (target < 50 ms)",
    )
