"""`syncer report`: one offline HTML file whose figures equal the views' and whose API text
never becomes markup."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from syncer.bi.figures import PALETTE
from syncer.bi.report import CHARTS
from syncer.config import Settings

from .conftest import SCRIPT_MODEL, SCRIPT_REPO, BiData
from .png import read_pixels

pytest.importorskip("plotly", reason="the report extra (plotly) is not installed")

SINCE = "2026-01-01"


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the JSON figure blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.figures: dict[str, Any] = {}
        self._chart: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        a = dict(attrs)
        self._chart = a.get("data-chart") if a.get("type") == "application/json" else None

    def handle_data(self, data: str) -> None:
        if self._chart is not None:
            self.figures[self._chart] = json.loads(data)
            self._chart = None


@pytest.fixture(scope="session")
async def report_path(bi_data: BiData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from syncer.bi.commands import report_command

    out = tmp_path_factory.mktemp("report") / "syncer-report.html"
    settings = Settings(_env_file=None, DATABASE_URL=bi_data.url)
    assert await report_command(settings, SINCE, out) == 0
    return out


@pytest.fixture(scope="session")
def parsed(report_path: Path) -> _Tags:
    parser = _Tags()
    parser.feed(report_path.read_text(encoding="utf-8"))
    return parser


def _trace(fig: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in fig["data"] if html.unescape(t["name"]) == name)


def test_self_contained_no_external_reference(report_path: Path, parsed: _Tags) -> None:
    page = report_path.read_text(encoding="utf-8")
    assert not [(t, a) for t, a in parsed.tags if {"src", "href"} & a.keys()]
    assert not [t for t, _ in parsed.tags if t in ("link", "iframe", "img", "object", "embed")]
    assert "@import" not in page
    assert "@font-face" not in page
    assert "Plotly.newPlot" in page
    assert len(page) > 1_000_000, "plotly.js is inlined"


def test_api_text_never_becomes_markup(report_path: Path, parsed: _Tags) -> None:
    page = report_path.read_text(encoding="utf-8")
    assert SCRIPT_REPO not in page
    assert "<img src=x" not in page
    assert SCRIPT_MODEL not in page
    scripts = [a for t, a in parsed.tags if t == "script"]
    assert len(scripts) == 2 + len(CHARTS), "only our own script elements"
    assert not [t for t, _ in parsed.tags if t in ("svg", "img")]
    repos = [html.unescape(n) for n in parsed.figures["repos"]["data"][0]["y"]]
    assert SCRIPT_REPO in repos, "the name is shown, as text"
    users = [html.unescape(n) for n in parsed.figures["users"]["data"][0]["y"]]
    assert "<img src=x onerror=alert(2)>@example.com" in users


async def test_every_chart_equals_its_view(parsed: _Tags, bi_conn: asyncpg.Connection) -> None:
    figs = parsed.figures
    assert set(figs) == {cid for cid, _, _ in CHARTS}

    share = await bi_conn.fetch(
        "SELECT * FROM syncer_bi.ai_share_daily WHERE day >= $1 ORDER BY day", _date(SINCE)
    )
    days = sorted({r["day"].isoformat() for r in share})
    primary = {r["day"].isoformat(): r for r in share if r["branch_scope"] == "primary"}
    added = _trace(figs["share"], "primary branch, added")
    assert added["x"] == days
    assert added["y"] == [primary[d]["ai_share_added"] if d in primary else None for d in days]
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in share:
        sums[r["day"].isoformat()][0] += r["ai_lines_changed"]
        sums[r["day"].isoformat()][1] += r["total_lines_changed"]
    changed = _trace(figs["share"], "all branches, changed")
    assert changed["y"] == [(a / t if t else None) for a, t in (sums[d] for d in days)]
    tab = _trace(figs["origin"], "Tab")
    assert sum(tab["y"]) == sum(r["tab_lines_added"] for r in share)

    repos = await bi_conn.fetch(
        "SELECT repo_name, sum(ai_lines_added) AS ai FROM syncer_bi.repo_daily WHERE day >= $1 "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 15",
        _date(SINCE),
    )
    bars = figs["repos"]["data"][0]
    got = list(zip([html.unescape(n) for n in bars["y"]], bars["x"], strict=True))[::-1]
    assert got == [(r["repo_name"], r["ai"]) for r in repos]

    wau = await bi_conn.fetch("SELECT * FROM syncer_bi.active_users_weekly ORDER BY week")
    assert _trace(figs["wau"], "any activity")["y"] == [r["users_any"] for r in wau]

    models = await bi_conn.fetchval(
        "SELECT sum(changes) FROM syncer_bi.changes_daily WHERE day >= $1", _date(SINCE)
    )
    assert sum(sum(t["y"]) for t in figs["models"]["data"]) == models
    cohorts = await bi_conn.fetchval("SELECT count(*) FROM syncer_bi.adoption_weekly")
    assert sum(sum(t["y"]) for t in figs["cohorts"]["data"]) == cohorts


def test_footer_shows_freshness_and_definitions(report_path: Path, bi_data: BiData) -> None:
    page = report_path.read_text(encoding="utf-8")
    assert f"<td>{len(bi_data.commits)}</td>" in page
    assert f"<td>{len(bi_data.changes)}</td>" in page
    assert "<dt>unattributed lines</dt>" in page
    assert "proxy" in page


def _date(spec: str) -> Any:
    from datetime import date

    return date.fromisoformat(spec)


CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--hide-scrollbars", "--no-first-run", "--mute-audio",
        # no network: any attempt to fetch a script, style or font fails
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=20000", f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    return subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=100, check=True
    )


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)",
)
def test_renders_offline_in_headless_chromium(report_path: Path, tmp_path: Path) -> None:
    dom = _chromium(tmp_path, "--dump-dom", report_path.as_uri()).stdout
    assert dom.count('class="plot-container plotly"') == len(CHARTS), "every chart was drawn"
    assert dom.count('class="main-svg"') >= 2 * len(CHARTS)
    assert 'class="trace bars"' in dom
    assert 'class="js-line"' in dom or 'class="scatterlayer' in dom

    shot = tmp_path / "report.png"
    _chromium(tmp_path, "--window-size=1280,4200", f"--screenshot={shot}", report_path.as_uri())
    width, height, pixels = read_pixels(shot)
    assert (width, height) == (1280, 4200)
    colours = set(pixels)
    assert len(colours) > 200, "not blank: text, axes and bars in many shades"
    non_background = sum(1 for p in pixels if p not in ((255, 255, 255), (248, 249, 250)))
    assert non_background > len(pixels) // 20
    for hex_colour in PALETTE[:3]:  # the first three series' colours are painted
        rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        assert rgb in colours, hex_colour


async def test_without_plotly_the_report_is_a_one_line_hint(
    bi_data: BiData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncer.bi.commands import report_command
    from syncer.errors import ConfigError

    monkeypatch.setitem(sys.modules, "plotly", None)  # `import plotly` raises ImportError
    settings = Settings(_env_file=None, DATABASE_URL=bi_data.url)
    with pytest.raises(
        ConfigError, match=r"^syncer report needs plotly: pip install 'syncer\[report\]'$"
    ):
        await report_command(settings, "90d", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_the_command_writes_the_file_and_prints_its_path(bi_data: BiData, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CURSOR_", "SYNC_"))}
    env["DATABASE_URL"] = bi_data.url
    args = [sys.executable, "-m", "syncer", "report", "--since", SINCE, "--out", "out.html"]
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "out.html")
    assert (tmp_path / "out.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    bad = subprocess.run([*args[:4], "--since", "last tuesday"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.startswith("syncer: error: report:")
    assert bad.stderr.count("\n") == 1
