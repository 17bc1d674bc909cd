"""Self-contained HTML and Markdown reports of a run or a study, from saved results only.

The HTML embeds every figure as a base64 PNG and inlines its CSS, so the one
file can be mailed, archived or attached to a paper's artefact without losing
anything. The Markdown twin references the PNGs written next to it (for Git
forges and notebooks). Both say whether the ledger still verifies, because a
report whose numbers cannot be traced back to a valid ledger is not evidence.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from simulation.outputs.plots import (
    OutputsError,
    RunData,
    StudyData,
    figure_style,
    is_run_dir,
    is_study_dir,
    load_run,
    load_study,
    run_figures,
    save_figures,
    study_figures,
)
from simulation.study.stats import MIN_SEEDS, Estimate

__all__ = ["LedgerSummary", "ReportPaths", "ledger_summary", "write_report"]

logger = logging.getLogger("fedmarket.outputs")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1,h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}
.ok{color:#009E73;font-weight:bold}.bad{color:#D55E00;font-weight:bold}
"""

_CAPTIONS = {
    "accuracy_loss": "Test accuracy and loss of the global model per round.",
    "reward_share": "Share of each round's rewards by agent type (ground truth).",
    "earnings": "Cumulative reward tokens of each participant.",
    "lorenz": "Lorenz curve and Gini coefficient of final earnings.",
    "epsilon": "Differential-privacy loss ε per round: max and mean over owners, per identity.",
    "votes_licenses": "Vote ratings over time and cumulative license revenue.",
    "token_flows": "Token supply over time and total tokens moved by entry kind.",
    "gini": "Gini coefficient of reward and royalty tokens per design (as in summary.csv).",
    "attack_heatmap": "Attack success against attacker fraction.",
}


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """What the report says about a run's ledger."""

    head_hash: str
    entries: int
    checkpoints: int
    versions: int
    verified: bool
    verify_message: str


@dataclass(frozen=True, slots=True)
class ReportPaths:
    """The files :func:`write_report` wrote."""

    html: Path
    markdown: Path
    figures: tuple[Path, ...]


def ledger_summary(run_dir: Path) -> LedgerSummary | None:
    """Head, size, checkpoints and a from-scratch audit of the run's ledger (None if absent)."""
    if not (run_dir / "ledger.db").is_file():
        return None
    from marketplace import Market, MarketplaceError, audit_ledger

    try:
        with Market.open(run_dir, readonly=True) as market:
            head, size = market.head_hash, market.size
            checkpoints, versions = len(market.checkpoints()), len(market.versions())
    except MarketplaceError as exc:
        return LedgerSummary("?", 0, 0, 0, False, f"FAILED: cannot replay ledger: {exc}")
    try:
        report = audit_ledger(run_dir)
        verified, message = True, f"verified: {report.entries} entries, root {report.root}"
    except MarketplaceError as exc:
        verified, message = False, f"FAILED: {exc}"
    return LedgerSummary(head, size, checkpoints, versions, verified, message)


# -- headline numbers ----------------------------------------------------------------------

#: One definition of the Gini everywhere (``reward_gini`` of the study table).
_GINI = "Gini of tokens (rewards + royalties)"


def _run_gini(run: RunData) -> float | None:
    """``reward_gini`` of :func:`~simulation.results.metrics.run_metrics`: every account's
    reward and royalty tokens, as in ``summary.csv``."""
    from simulation.results.metrics import run_metrics

    try:
        return run_metrics(run.path)["reward_gini"]
    except (OSError, ValueError, KeyError):
        return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    if value is None:
        return "–"
    return str(value)


def _run_headline(run: RunData) -> dict[str, Any]:
    final = run.manifest.get("final", {})
    final = final if isinstance(final, Mapping) else {}
    scenario = run.scenario
    privacy = scenario.get("privacy", {}) if isinstance(scenario.get("privacy"), Mapping) else {}
    truth = run.truth()
    tokens = float(run.rounds["tokens_issued"].sum()) if "tokens_issued" in run.rounds else None
    return {
        "scenario": scenario.get("name"),
        "seed": run.seed,
        "rounds": final.get("round", scenario.get("rounds")),
        "data owners": len({truth.owner(a) for a in run.behaviours()}) or None,
        "final test accuracy": final.get("test_accuracy"),
        "final test loss": final.get("test_loss"),
        "ε max": final.get("epsilon_max"),
        "δ": privacy.get("delta"),
        "tokens issued": tokens,
        _GINI: _run_gini(run),
        "attacking owners": len({truth.owner(a) for a in truth.attackers}),
        "wall seconds": run.manifest.get("wall_seconds"),
    }


#: The study headline's metrics (summary.csv names) and their column headers.
_STUDY_SHOWN = {
    "test_accuracy": "final test accuracy",
    "test_loss": "final test loss",
    "epsilon_max": "ε max",
    "reward_gini": _GINI,
    "attacker_token_share": "attackers' token share",
    "honest_profit": "honest profit",
    "reward_spearman": "Spearman (tokens, contribution)",
}


def _study_summary(study: StudyData) -> pd.DataFrame:
    """The study's ``summary.parquet``/``.csv`` as ``fedmarket compare`` wrote it; for a
    plain directory of runs (or an older summary) the same summary rebuilt from the runs'
    files with :func:`~simulation.study.compare.summarize`, so the two never disagree."""
    for name in ("summary.parquet", "summary.csv"):
        f = study.path / name
        if f.is_file():
            table = pd.read_parquet(f) if name.endswith("parquet") else pd.read_csv(f)
            if "test_accuracy_points" in table.columns:
                return table
    from simulation.results.metrics import run_metrics
    from simulation.study.compare import summarize

    rows = []
    for design, runs in study.designs.items():
        for run in runs:
            try:
                values: dict[str, Any] = dict(run_metrics(run.path))
                status = "ok"
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("%s: unreadable results (%s); left out", run.path, exc)
                values, status = {}, "failed"
            rows.append({"design": design, "seed": run.seed, "status": status, **values})
    return summarize(pd.DataFrame(rows), ())


def _estimate(row: Mapping[str, Any], metric: str) -> Estimate:
    points = str(row.get(f"{metric}_points", "") or "")
    n = row.get(f"{metric}_n", 0)
    return Estimate(
        int(n) if isinstance(n, int | float) and n == n else 0,
        float(row.get(f"{metric}_mean", math.nan)),
        float(row.get(f"{metric}_lo", math.nan)),
        float(row.get(f"{metric}_hi", math.nan)),
        tuple(float(v) for v in points.split(";") if v),
    )


def _study_headline(summary: pd.DataFrame) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for _, r in summary.iterrows():
        row: dict[str, Any] = {"design": r["design"], "seeds": r["runs"] - r["failed"]}
        for metric, header in _STUDY_SHOWN.items():
            if f"{metric}_mean" in r:
                row[header] = _estimate(r.to_dict(), metric).text()
        rows.append(row)
    return rows


def _statistics_note(summary: pd.DataFrame) -> str:
    method = str(summary["interval"].iloc[0]) if "interval" in summary and len(summary) else "?"
    test = str(summary["paired_test"].iloc[0]) if "paired_test" in summary and len(summary) else ""
    name = {"bootstrap": "percentile bootstrap over seeds", "t": "Student t over seeds"}
    tests = {"wilcoxon": "exact two-sided Wilcoxon signed-rank", "t": "two-sided paired t"}
    return (
        f"Mean [95% interval: {name.get(method, method)}, clipped to the metric's range]; "
        f"with fewer than {MIN_SEEDS} seeds the per-seed values instead. n/a: undefined on "
        "every seed (e.g. Spearman of a constant vector). Paired differences: design minus "
        f"the first design on the same seeds, p of the {tests.get(test, test)} test. "
        "Values as in summary.csv."
    )


def _p_text(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.4g}"


def _paired_rows(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """Each design minus the reference design on shared seeds, with the paired test's p."""
    rows: list[dict[str, Any]] = []
    for _, r in summary.iloc[1:].iterrows():
        row: dict[str, Any] = {
            "design": r["design"],
            "minus": r.get("paired_reference"),
            "test": r.get("paired_test"),
        }
        for metric, header in _STUDY_SHOWN.items():
            if f"{metric}_diff" not in r:
                continue
            d = _estimate(
                {
                    f"{metric}_{k}": r.get(f"{metric}_diff{s}", math.nan)
                    for k, s in (("mean", ""), ("lo", "_lo"), ("hi", "_hi"), ("n", "_n"))
                },
                metric,
            )
            if d.n == 0:
                row[header] = "n/a"
            elif d.has_interval:
                row[header] = f"{d.text()}, p = {_p_text(float(r[f'{metric}_p']))}"
            else:
                row[header] = f"{d.mean:.4g} (n = {d.n}), p = {_p_text(float(r[f'{metric}_p']))}"
        rows.append(row)
    return rows


# -- rendering -----------------------------------------------------------------------------


def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with figure_style():
        fig.savefig(buf, format="png", metadata={"Software": "fedmarket"})
    return buf.getvalue()


def _html_table(rows: Sequence[Mapping[str, Any]], css_class: str) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _md_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(none)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = (_fmt(r.get(c)).replace("|", "\\|") for c in cols)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _kv_rows(mapping: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"field": k, "value": v} for k, v in mapping.items()]


def _ledger_rows(named: Sequence[tuple[str, LedgerSummary | None]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, s in named:
        if s is None:
            rows.append({"run": name, "head hash": None, "entries": None, "status": "no ledger"})
            continue
        rows.append(
            {
                "run": name,
                "head hash": s.head_hash,
                "entries": s.entries,
                "checkpoints": s.checkpoints,
                "model versions": s.versions,
                "status": s.verify_message,
            }
        )
    return rows


def _manifest_rows(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    keys = ("scenario_hash", "seed", "git_commit", "ledger_head", "python", "platform")
    rows = {k: manifest.get(k) for k in keys if k in manifest}
    packages = manifest.get("packages")
    if isinstance(packages, Mapping):
        rows["packages"] = ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))
    return _kv_rows(rows)


@dataclass(frozen=True, slots=True)
class _Content:
    title: str
    headline: list[dict[str, Any]]
    scenario_yaml: str
    manifest: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    figures: dict[str, Figure]
    statistics: str = ""
    paired: list[dict[str, Any]] = field(default_factory=list)


def _run_content(run: RunData) -> _Content:
    scenario_file = run.path / "scenario.yaml"
    scenario_text = (
        scenario_file.read_text(encoding="utf-8")
        if scenario_file.is_file()
        else json.dumps(run.scenario, indent=2, sort_keys=True)
    )
    return _Content(
        title=f"FedMarket run report: {run.scenario.get('name', run.path.name)}",
        headline=_kv_rows(_run_headline(run)),
        scenario_yaml=scenario_text,
        manifest=_manifest_rows(run.manifest),
        ledger=_ledger_rows([(run.path.name, ledger_summary(run.path))]),
        figures=run_figures(run),
    )


def _study_content(study: StudyData) -> _Content:
    design = {"design fields": ", ".join(study.design_keys) or "(none vary)"}
    design["runs"] = ", ".join(r.path.name for r in study.runs)
    summary = _study_summary(study)
    return _Content(
        title=f"FedMarket study report: {study.path.name}",
        headline=_study_headline(summary),
        statistics=_statistics_note(summary),
        paired=_paired_rows(summary),
        scenario_yaml=json.dumps(dict(study.runs[0].scenario), indent=2, sort_keys=True),
        manifest=_kv_rows(design),
        ledger=_ledger_rows([(r.path.name, ledger_summary(r.path)) for r in study.runs]),
        figures=study_figures(study),
    )


def _html_statistics(content: _Content) -> str:
    out = f"<p>{html.escape(content.statistics)}</p>" if content.statistics else ""
    if content.paired:
        out += f"<h2>Paired differences</h2>{_html_table(content.paired, 'paired')}"
    return out


def _render_html(content: _Content) -> str:
    figs = []
    for name, fig in content.figures.items():
        data = base64.b64encode(_png_bytes(fig)).decode("ascii")
        caption = html.escape(_CAPTIONS.get(name, name))
        figs.append(
            f'<figure id="fig-{name}"><img alt="{html.escape(name)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>'
        )
    status = "".join(str(r.get("status", "")) for r in content.ledger)
    ok = "bad" if ("FAILED" in status or "no ledger" in status) else "ok"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(content.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(content.title)}</h1>"
        f"<h2>Headline</h2>{_html_table(content.headline, 'headline')}"
        f"{_html_statistics(content)}"
        f"<h2>Figures</h2>{''.join(figs) or '<p>(no figures: no data)</p>'}"
        f'<h2>Ledger</h2><p class="{ok}">ledger status</p>'
        f"{_html_table(content.ledger, 'ledger')}"
        f"<h2>Manifest</h2>{_html_table(content.manifest, 'manifest')}"
        f"<h2>Scenario</h2><pre>{html.escape(content.scenario_yaml)}</pre>"
        "</body></html>\n"
    )


def _render_markdown(content: _Content, figure_paths: Mapping[str, str]) -> str:
    parts = [f"# {content.title}\n", "## Headline\n", _md_table(content.headline)]
    if content.statistics:
        parts.append(content.statistics + "\n")
    if content.paired:
        parts += ["## Paired differences\n", _md_table(content.paired)]
    parts.append("## Figures\n")
    for name, rel in figure_paths.items():
        parts.append(f"![{name}]({rel})\n\n*{_CAPTIONS.get(name, name)}*\n")
    parts += [
        "## Ledger\n",
        _md_table(content.ledger),
        "## Manifest\n",
        _md_table(content.manifest),
    ]
    parts += ["## Scenario\n", "```yaml\n" + content.scenario_yaml.rstrip() + "\n```\n"]
    return "\n".join(parts)


def write_report(path: Path | str, out_dir: Path | None = None) -> ReportPaths:
    """Write ``report.html`` and ``report.md`` (+ ``figures/*.png``) for a run or study.

    The default output directory is ``PATH/report``.
    """
    p = Path(path)
    if not p.exists():
        raise OutputsError(f"{p}: no such run or study directory")
    if is_run_dir(p):
        content = _run_content(load_run(p))
    elif is_study_dir(p):
        content = _study_content(load_study(p))
    else:
        raise OutputsError(f"{p}: neither a run directory (manifest.json) nor a study of runs")
    out = out_dir if out_dir is not None else p / "report"
    out.mkdir(parents=True, exist_ok=True)
    written = save_figures(content.figures, out / "figures", ("png",))
    rel = {f.stem: f"figures/{f.name}" for f in written}
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(_render_html(content), encoding="utf-8")
    md_path.write_text(_render_markdown(content, rel), encoding="utf-8")
    logger.info("wrote report %s (%d figures)", html_path, len(content.figures))
    return ReportPaths(html_path, md_path, tuple(written))
