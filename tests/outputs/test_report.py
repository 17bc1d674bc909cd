"""Reports: self-contained HTML (base64 figures, no external assets) and Markdown."""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from marketplace import Market
from simulation.outputs.report import ledger_summary, write_report
from tests.outputs.conftest import OUTCOME_FIGURES, RUN_FIGURES, STUDY_FIGURES


def test_run_report_html_and_markdown(cli: typer.Typer, run_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    html = (run_dir / "report" / "report.html").read_text()
    images = re.findall(r'<img alt="([a-z_]+)" src="data:image/png;base64,', html)
    assert images == list(RUN_FIGURES)
    assert not re.search(r'(src|href)="(http|//|file:)', html)  # no external assets
    with Market.open(run_dir) as market:
        head = market.head_hash
    assert head in html and "verified:" in html
    for cls in ("headline", "ledger", "manifest"):
        assert f'<table class="{cls}">' in html
    assert "final test accuracy" in html and "ε max" in html
    md = (run_dir / "report" / "report.md").read_text()
    links = re.findall(r"!\[[a-z_]+\]\((figures/[a-z_]+\.png)\)", md)
    assert len(links) == len(images)
    assert all((run_dir / "report" / link).is_file() for link in links)
    assert "| final test accuracy |" in md and head in md


def test_study_report(study_dir: Path, tmp_path: Path) -> None:
    paths = write_report(study_dir, tmp_path / "rep")
    html = paths.html.read_text()
    assert re.findall(r'<img alt="([a-z_]+)"', html) == list(STUDY_FIGURES)
    assert "lr=0.1" in html and "lr=0.5" in html
    assert html.count("verified:") == 4  # one ledger row per run


def test_report_flags_a_tampered_ledger(run_dir: Path, tmp_path: Path) -> None:
    db = run_dir / "ledger.db"
    with sqlite3.connect(db) as conn:  # inflate one reward by one base unit
        seq, record = conn.execute(
            "SELECT seq, record FROM entries WHERE kind = 'reward' ORDER BY seq LIMIT 1"
        ).fetchone()
        amount = re.search(r'"amount":(\d+)', record)
        assert amount
        forged = record.replace(amount.group(0), f'"amount":{int(amount.group(1)) + 1}', 1)
        conn.execute("UPDATE entries SET record = ? WHERE seq = ?", (forged, seq))
    html = write_report(run_dir, tmp_path / "rep").html.read_text()
    assert "FAILED" in html and 'class="bad"' in html


def test_the_reports_audit_uses_the_ledger_verify_default(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import marketplace
    from marketplace.audit import VERIFY_WORKERS, audit_ledger

    asked: list[int] = []

    def spy(path: Path, *, workers: int = 1, **kw: Any) -> Any:
        asked.append(workers)
        return audit_ledger(path, workers=workers, **kw)

    monkeypatch.setattr(marketplace, "audit_ledger", spy)
    summary = ledger_summary(run_dir)
    assert summary is not None and summary.verified
    assert asked == [VERIFY_WORKERS] == [2]


_PROBE = """
<script>
window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({
    images: [...document.images].map(i => [i.alt, i.naturalWidth, i.naturalHeight]),
    tables: [...document.querySelectorAll('table')].map(t => [t.className, t.rows.length]),
    innerWidth: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
  });
  out.style.display = 'none';
  document.body.appendChild(out);
});
</script>
"""

#: The browsers the test (and .ci/run, which installs ``chromium``) look for.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1280


def _chromium() -> str:
    """The headless browser; under ``CI=true`` its absence fails, so CI never skips this."""
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"CI=true but none of {', '.join(CHROMIUM_NAMES)} is on PATH (.ci/run installs it)"
        )
    pytest.skip("chromium is not on PATH")


def _headless(browser: str, page: Path, *action: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={WIDTH},1000",
                "--virtual-time-budget=5000",
                *action,
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout


def _render(report: Path, tmp_path: Path) -> dict[str, Any]:
    """Open the report at 1280 px as a person would: a screenshot of that width, and
    the DOM's own measurements (images decoded, tables, horizontal scroll width)."""
    browser = _chromium()
    shot = tmp_path / "screenshot.png"
    _headless(browser, report, f"--screenshot={shot}")
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])  # the PNG IHDR
    assert (width, height) == (WIDTH, 1000)
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", _PROBE + "</body>"))
    dom = _headless(browser, probe, "--dump-dom")
    match = re.search(r'<pre id="probe"[^>]*>(.*?)</pre>', dom, re.S)
    assert match, dom[-2000:]
    data: dict[str, Any] = json.loads(html_lib.unescape(match.group(1)))
    assert data["innerWidth"] == WIDTH
    assert data["scrollWidth"] <= WIDTH, data["scrollWidth"]  # nothing overflows sideways
    assert all(w > 100 and h > 100 for _, w, h in data["images"]), data["images"]
    return data


@pytest.mark.slow
def test_run_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    data = _render(write_report(run_dir, tmp_path / "rep").html, tmp_path)
    assert [alt for alt, _, _ in data["images"]] == list(RUN_FIGURES)
    tables = dict(data["tables"])
    assert tables["headline"] > 5 and tables["ledger"] == 2 and tables["manifest"] > 3
    assert tables["outcomes"] > 3


@pytest.mark.slow
def test_study_report_renders_in_headless_chromium(outcome_report: Any, tmp_path: Path) -> None:
    data = _render(outcome_report.html, tmp_path)
    assert [alt for alt, _, _ in data["images"]] == list(OUTCOME_FIGURES)
    # a table per design of 8 sets (2 totals, 3 population groups, 3 attack roles)
    assert [rows for cls, rows in data["tables"] if cls == "outcomes"] == [1 + 8, 1 + 8]
    tables = dict(data["tables"])
    assert tables["ledger"] == 1 + 4 and tables["headline"] == 3  # 4 runs, 2 designs


def _tokens_gini(run: Path) -> float:
    """Gini of every account's reward + royalty tokens, from the run's files (by hand)."""
    import numpy as np
    import pandas as pd

    rows = pd.read_parquet(run / "metrics.parquet")
    paid = rows[rows["metric"].isin(["reward_tokens", "royalty_tokens"])]
    tokens = paid[paid["client"] != "global"].groupby("client")["value"].sum().to_dict()
    for account in json.loads((run / "ground_truth.json").read_text())["behaviours"]:
        tokens.setdefault(account, 0.0)
    x = np.array(list(tokens.values()), dtype=float)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean()))


def test_study_report_statistics(study_dir: Path, tmp_path: Path) -> None:
    """Two seeds per design: per-seed points and no interval; one Gini definition; the
    paired table's exact Wilcoxon p can never go below 2 / 2^2 = 0.5."""
    md = write_report(study_dir, tmp_path / "rep").markdown.read_text()
    assert "Gini of tokens (rewards + royalties)" in md
    for lr in (0.1, 0.5):
        g = [_tokens_gini(study_dir / f"lr{lr}-seed{s}") for s in (1, 2)]
        cell = f"{(g[0] + g[1]) / 2:.4g} (seeds: {g[0]:.4g}, {g[1]:.4g})"
        assert cell in md, cell
    assert "## Paired differences" in md and "minus" in md
    ps = [float(p) for p in re.findall(r"p = ([0-9.e-]+)", md)]
    assert ps and min(ps) >= 0.5
