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
import re
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
    study_summary,
    summary_estimate,
    summary_records,
)
from simulation.study.stats import MIN_SEEDS

__all__ = ["LedgerSummary", "ReportPaths", "ledger_summary", "write_report"]

logger = logging.getLogger("fedmarket.outputs")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h3{margin:1.2em 0 .2em;font-size:1em}
h1,h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
.scroll{max-width:100%;overflow-x:auto;margin:1em 0}
table{border-collapse:collapse;font-size:.85em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top;
overflow-wrap:break-word}
table.ledger td,table.manifest td{word-break:break-all}
th{background:#f3f3f3}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em;white-space:pre-wrap}
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
    "attacker_token_share": "Attacking owners' share of all tokens (rewards + royalties) per "
    "design (summary.csv total:attackers:token_share).",
    "honest_profit": "Honest owners' net profit (tokens minus costs) per owner, per design "
    "(summary.csv total:honest:net_profit_per_owner).",
    "token_share_groups": "Token share by population group and by attack role, stacked per "
    "design (means over seeds; each partition adds up to 1).",
    "detection": "Precision, recall and F1 of each detector that acted, telling attacking "
    "owners from honest ones (summary.csv total:attackers:<detector>_<score>).",
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
    from marketplace.audit import VERIFY_WORKERS

    try:
        with Market.open(run_dir, readonly=True) as market:
            head, size = market.head_hash, market.size
            checkpoints, versions = len(market.checkpoints()), len(market.versions())
    except MarketplaceError as exc:
        return LedgerSummary("?", 0, 0, 0, False, f"FAILED: cannot replay ledger: {exc}")
    try:
        report = audit_ledger(run_dir, workers=VERIFY_WORKERS)  # as `fedmarket ledger verify`
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
        "attacking owners": len(truth.attacker_owners()),  # as the outcomes table counts
        "wall seconds": run.manifest.get("wall_seconds"),
    }


#: The study headline's metrics (summary.csv names) and their column headers. The
#: attackers' and honest owners' outcomes are the groups data's (one definition: the same
#: columns as the outcomes table, the figures and summary.csv's ``total:*`` cells).
_STUDY_SHOWN = {
    "test_accuracy": "final test accuracy",
    "test_loss": "final test loss",
    "epsilon_max": "ε max",
    "reward_gini": _GINI,
    "total:attackers:token_share": "attackers' token share",
    "total:honest:net_profit_per_owner": "honest profit per owner",
    "reward_spearman": "Spearman (tokens, contribution)",
}

#: The outcomes table's columns: groups data column → header.
_OUTCOME_COLUMNS = {
    "owners": "owners",
    "token_share": "token share",
    "reward_share": "reward share",
    "royalty_share": "royalty share",
    "net_profit_per_owner": "net profit per owner",
    "contribution_share": "contribution share (signed)",
    "any_precision": "detection precision (any)",
    "any_recall": "detection recall (any)",
    "any_f1": "detection F1 (any)",
}
_SET_LABEL = {"total": "total", "group": "population group", "kind": "attack role"}
_SET_PATTERN = re.compile(r"^(total|group|kind):(.+):token_share_mean$")


def _outcome_sets(columns: Sequence[str]) -> list[tuple[str, str]]:
    """``(set, name)`` of every group in the summary, totals first, then population
    groups, then attack roles (in the summary's order within each)."""
    found = [(m.group(1), m.group(2)) for c in columns if (m := _SET_PATTERN.match(str(c)))]
    order = {k: i for i, k in enumerate(_SET_LABEL)}
    return sorted(dict.fromkeys(found), key=lambda s: order[s[0]])


def _study_outcomes(summary: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Per design, a row per group of owners (groups data), each outcome as summary.csv
    holds it."""
    sets = _outcome_sets(list(summary.columns))
    tables: dict[str, list[dict[str, Any]]] = {}
    for rec in summary_records(summary):
        rows = tables.setdefault(str(rec["design"]), [])
        for kind, name in sets:
            row: dict[str, Any] = {"set": _SET_LABEL[kind], "name": name}
            for column, header in _OUTCOME_COLUMNS.items():
                if f"{kind}:{name}:{column}_mean" in rec:
                    est = summary_estimate(rec, f"{kind}:{name}:{column}")
                    # a count of owners is the same on every seed: the points add nothing
                    row[header] = f"{est.mean:.4g}" if column == "owners" else est.text()
            rows.append(row)
    return tables


def _run_outcomes(run: RunData) -> dict[str, list[dict[str, Any]]]:
    """The run's groups data (``groups.parquet``, else computed from its files)."""
    from simulation.results.groups import GROUPS_FILE, run_group_outcomes

    f = run.path / GROUPS_FILE
    try:
        table = pd.read_parquet(f) if f.is_file() else run_group_outcomes(run.path)
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("%s: no group outcomes (%s)", run.path, exc)
        return {}
    order = {k: i for i, k in enumerate(_SET_LABEL)}
    rows = []
    for rec in sorted(table.to_dict("records"), key=lambda r: order.get(str(r["set"]), 9)):
        row: dict[str, Any] = {"set": _SET_LABEL.get(str(rec["set"]), rec["set"])}
        row["name"] = rec["name"]
        for column, header in _OUTCOME_COLUMNS.items():
            if column in rec:
                value = rec[column]
                row[header] = int(value) if column == "owners" else float(value)
        rows.append(row)
    return {"": rows}


def _study_headline(summary: pd.DataFrame) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for r in summary_records(summary):
        row: dict[str, Any] = {"design": r["design"], "seeds": r["runs"] - r["failed"]}
        for metric, header in _STUDY_SHOWN.items():
            if f"{metric}_mean" in r:
                row[header] = summary_estimate(r, metric).text()
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
    for r in summary_records(summary)[1:]:
        row: dict[str, Any] = {
            "design": r["design"],
            "minus": r.get("paired_reference"),
            "test": r.get("paired_test"),
        }
        for metric, header in _STUDY_SHOWN.items():
            if f"{metric}_diff" not in r:
                continue
            d = summary_estimate(
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
    # The wrapper scrolls a table wider than the page inside itself, so the page never
    # overflows sideways (a ledger's hashes, a study's many outcome columns).
    return (
        f'<div class="scroll"><table class="{css_class}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


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
    outcomes: dict[str, list[dict[str, Any]]]
    """Outcome rows, one table per design (the key is ``""`` for a run)."""
    headline: list[dict[str, Any]]
    scenario_yaml: str
    manifest: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    figures: dict[str, Figure]
    statistics: str = ""
    paired: list[dict[str, Any]] = field(default_factory=list)


def _run_content(run: RunData) -> _Content:
    return _Content(
        title=f"FedMarket run report: {run.scenario.get('name', run.path.name)}",
        outcomes=_run_outcomes(run),
        headline=_kv_rows(_run_headline(run)),
        scenario_yaml=_scenario_yaml(run),
        manifest=_manifest_rows(run.manifest),
        ledger=_ledger_rows([(run.path.name, ledger_summary(run.path))]),
        figures=run_figures(run),
    )


def _study_content(study: StudyData) -> _Content:
    design = {"design fields": ", ".join(study.design_keys) or "(none vary)"}
    design["runs"] = ", ".join(r.path.name for r in study.runs)
    summary = study_summary(study)
    first = study.runs[0]
    varying = ", ".join(study.design_keys) or "none"
    header = f"# {first.path.name}'s resolved scenario; across the study these vary: {varying}\n"
    return _Content(
        title=f"FedMarket study report: {study.path.name}",
        outcomes=_study_outcomes(summary),
        headline=_study_headline(summary),
        statistics=_statistics_note(summary),
        paired=_paired_rows(summary),
        scenario_yaml=header + _scenario_yaml(first),
        manifest=_kv_rows(design),
        ledger=_ledger_rows([(r.path.name, ledger_summary(r.path)) for r in study.runs]),
        figures=study_figures(study, summary),
    )


def _scenario_yaml(run: RunData) -> str:
    """The run's ``scenario.yaml`` as written, else its resolved scenario dumped as YAML."""
    scenario_file = run.path / "scenario.yaml"
    if scenario_file.is_file():
        return scenario_file.read_text(encoding="utf-8")
    import yaml

    return str(yaml.safe_dump(json.loads(json.dumps(run.scenario)), sort_keys=False))


_OUTCOMES_NOTE = (
    "Per set of data owners (docs/outputs.md, 'Outcomes per group'): token share = the "
    "set's reward + royalty tokens over everyone's; net profit = tokens minus costs; "
    "contribution share = the set's signed share of the reference contribution; detection "
    "(any detector) = telling the set's attacking owners from honest owners. n/a: "
    "undefined (no tokens, no attackers in the set, nothing flagged)."
)


def _html_statistics(content: _Content) -> str:
    out = f"<p>{html.escape(content.statistics)}</p>" if content.statistics else ""
    if content.paired:
        out += f"<h2>Paired differences</h2>{_html_table(content.paired, 'paired')}"
    return out


def _html_outcomes(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    if not tables:
        return "<p>(none)</p>"
    return "".join(
        (f"<h3>{html.escape(design)}</h3>" if design else "") + _html_table(rows, "outcomes")
        for design, rows in tables.items()
    )


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
        f"<h2>Outcomes per group</h2>{_html_outcomes(content.outcomes)}"
        f"<p>{html.escape(_OUTCOMES_NOTE)}</p>"
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
    parts = [f"# {content.title}\n", "## Outcomes per group\n"]
    for design, rows in content.outcomes.items() or {"": []}.items():
        parts += [f"### {design}\n"] if design else []
        parts.append(_md_table(rows))
    parts += [_OUTCOMES_NOTE + "\n", "## Headline\n", _md_table(content.headline)]
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
