"""Study figures and reports of the outcomes per group: what they show, that they agree
with summary.csv, and that a metric without data gets no figure."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from simulation.outputs.plots import RunData, StudyData, load_study, study_figures
from simulation.outputs.report import ReportPaths
from tests.outputs.conftest import OUTCOME_FIGURES, STUDY_FIGURES

EQUAL, DATA_SIZE = "rewards.mechanism=equal", "rewards.mechanism=data_size"


def _summary(study: Path) -> pd.DataFrame:
    return pd.read_csv(study / "summary.csv").set_index("design")


def _cell(mean: float, points: str) -> str:
    """How a table prints a mean and its seeds (below 5 seeds), computed here by hand."""
    seeds = ", ".join(f"{float(v):.4g}" for v in points.split(";"))
    return f"{mean:.4g} (seeds: {seeds})"


def _bars(ax: object) -> list[float]:
    return [p.get_width() for p in ax.patches]  # type: ignore[attr-defined]


def test_outcome_figures_show_the_groups(outcome_study: Path) -> None:
    study = load_study(outcome_study)
    figs = study_figures(study)
    assert list(figs) == list(OUTCOME_FIGURES)  # no ε figure: no DP, ε is 0 throughout

    # Reward designs do not touch training: one accuracy line, labelled so.
    ax_acc, _ = figs["accuracy_loss"].axes
    labelled = [ln.get_label() for ln in ax_acc.get_lines() if not ln.get_label().startswith("_")]
    assert labelled == ["identical across designs (2 designs, n=2)"]
    runs = study.designs[study_keys(study)[0]]
    expected = np.mean([r.rounds["test_accuracy"].to_numpy() for r in runs], axis=0)
    assert ax_acc.get_lines()[0].get_ydata() == pytest.approx(expected)
    assert len(ax_acc.get_lines()) == 1 + 2  # the mean and each seed (2 < 5: no band)

    # Under `equal` each of the 6 identities gets 1/6: the Sybil owner (2 identities)
    # 2/6 and the free-rider 1/6, so the attackers hold 3/6 (by hand).
    (ax_share,) = figs["attacker_token_share"].axes
    designs = [t.get_text() for t in ax_share.get_yticklabels()]
    # the sweep order, from the bottom, with the per-round figures' short labels
    assert designs == ["mechanism=equal", "mechanism=data_size"]
    summary = _summary(outcome_study)
    widths = dict(zip([EQUAL, DATA_SIZE], _bars(ax_share), strict=True))
    assert widths[EQUAL] == pytest.approx(3 / 6)
    assert widths[DATA_SIZE] == summary.loc[DATA_SIZE, "total:attackers:token_share_mean"]

    ax_group, ax_kind = figs["token_share_groups"].axes
    legend = [t.get_text() for t in ax_group.get_legend().get_texts()]
    assert sorted(legend) == ["(none)", "riders", "sybils"]
    stacked = dict(zip(legend, np.array(_bars(ax_group)).reshape(3, 2)[:, 0], strict=True))
    assert stacked == pytest.approx({"riders": 1 / 6, "sybils": 2 / 6, "(none)": 3 / 6})
    roles = sorted(t.get_text() for t in ax_kind.get_legend().get_texts())
    assert roles == ["free_rider", "honest", "sybil+label_flip"]

    # fedavg reports no weights: the aggregator did not act; nothing was flagged, so
    # recall is 0 and precision undefined (no precision bar drawn above 0).
    det = figs["detection"]
    titles = [ax.get_title() for ax in det.axes]
    assert titles == ["screen", "mechanism", "any"]
    assert all(w == 0.0 for ax in det.axes for w in _bars(ax))


def study_keys(study: object) -> list[str]:
    return list(study.designs)  # type: ignore[attr-defined]


def test_lr_study_draws_a_line_per_design(study_dir: Path) -> None:
    figs = study_figures(load_study(study_dir))
    assert list(figs) == list(STUDY_FIGURES)  # no attackers: no share, no detection figure
    ax_acc, _ = figs["accuracy_loss"].axes
    labelled = [ln.get_label() for ln in ax_acc.get_lines() if not ln.get_label().startswith("_")]
    assert labelled == ["lr=0.1 (n=2)", "lr=0.5 (n=2)"]


def test_blank_heatmap_is_not_drawn(study_dir: Path) -> None:
    table = pd.DataFrame({"attacker_fraction": [0.1, 0.3], "attack_success": [np.nan, np.nan]})
    study = replace(load_study(study_dir), table=table)
    assert "attack_heatmap" not in study_figures(study)


def test_study_report_leads_with_outcomes_that_match_summary_csv(
    outcome_study: Path, outcome_report: ReportPaths
) -> None:
    paths = outcome_report
    md, html = paths.markdown.read_text(), paths.html.read_text()
    assert re.findall(r"^## (.+)$", md, re.M)[:2] == ["Outcomes per group", "Headline"]
    assert re.search(r"<h2>(.*?)</h2>", html).group(1) == "Outcomes per group"  # type: ignore[union-attr]
    summary = _summary(outcome_study)
    for design in (EQUAL, DATA_SIZE):
        rec = summary.loc[design]
        for cell in ("total:attackers:token_share", "group:sybils:token_share",
                     "kind:free_rider:net_profit_per_owner", "total:honest:net_profit_per_owner",
                     "reward_gini", "test_accuracy"):  # fmt: skip
            text = _cell(rec[f"{cell}_mean"], rec[f"{cell}_points"])
            assert text in md and text in html, (design, cell, text)
        section = md.split(f"### {design}\n")[1].split("###")[0]
        row = next(ln for ln in section.splitlines() if ln.startswith("| total | attackers"))
        assert row.startswith("| total | attackers | 2 |")  # the Sybil owner, the free-rider
        assert f"<h3>{design}</h3>" in html
    # the headline's attackers' share is the outcomes table's (one definition)
    head = md.split("## Headline")[1].split("##")[0]
    share = summary.loc[EQUAL]
    assert (
        _cell(
            share["total:attackers:token_share_mean"], share["total:attackers:token_share_points"]
        )
        in head
    )
    # the scenario as YAML, parsable, the first run's
    block = md.split("## Scenario\n")[1].split("```yaml\n")[1].split("```")[0]
    scenario = yaml.safe_load(block)
    assert scenario["clients"]["count"] == 6 and scenario["population"][0]["group"] == "sybils"
    images = re.findall(r'<img alt="([a-z_]+)"', html)
    assert images == list(OUTCOME_FIGURES)
    assert sorted(p.stem for p in paths.figures) == sorted(OUTCOME_FIGURES)
    assert '<div class="scroll"><table class="ledger">' in html


def _fake_run(name: str, seed: int, accuracy: list[float]) -> RunData:
    rounds = pd.DataFrame(
        {"round": range(len(accuracy)), "test_accuracy": accuracy, "test_loss": accuracy}
    )
    metrics = pd.DataFrame(
        [(1, "client-000", "reward_tokens", 10.0)], columns=["round", "client", "metric", "value"]
    )
    manifest = {"seed": seed, "scenario": {"seed": seed, "training": {"lr": name}}}
    return RunData(Path(f"/nonexistent/{name}-{seed}"), manifest, rounds, metrics, {})


def test_five_seeds_draw_intervals_instead_of_seeds() -> None:
    """From 5 seeds: a band per design (inside the seeds' range, around the mean) and
    the summary's interval as the whisker, no per-seed lines."""
    acc = {"a": [0.1, 0.2, 0.3, 0.4, 0.5], "b": [0.6, 0.6, 0.7, 0.8, 0.9]}
    designs = {
        f"lr={d}": tuple(_fake_run(d, s, [0.0, v]) for s, v in enumerate(vals, 1))
        for d, vals in acc.items()
    }
    runs = tuple(r for rs in designs.values() for r in rs)
    study = StudyData(Path("/nonexistent"), runs, ("training.lr",), designs, None)
    summary = pd.DataFrame(
        {
            "design": ["lr=a", "lr=b"],
            "reward_gini_mean": [0.3, 0.5],
            "reward_gini_lo": [0.25, 0.4],
            "reward_gini_hi": [0.35, 0.7],
            "reward_gini_n": [5, 5],
            "reward_gini_points": ["0.2;0.3;0.3;0.3;0.4", "0.4;0.5;0.5;0.5;0.6"],
        }
    )
    figs = study_figures(study, summary)
    ax_acc, _ = figs["accuracy_loss"].axes
    assert len(ax_acc.get_lines()) == 2 and len(ax_acc.collections) == 2  # means and bands
    for band, vals in zip(ax_acc.collections, acc.values(), strict=True):
        ys = band.get_paths()[0].vertices[:, 1]
        final = ys[np.abs(ys) > 0]  # the round-1 edge (round 0 is 0 on every seed)
        assert min(vals) <= final.min() < np.mean(vals) < final.max() <= max(vals)
    (ax_gini,) = figs["gini"].axes
    assert "whisker: 95% interval" in ax_gini.get_title()
    (whiskers,) = [c for c in ax_gini.collections if len(c.get_segments()) == 2]
    spans = [tuple(seg[:, 0]) for seg in whiskers.get_segments()]
    assert spans == [pytest.approx((0.25, 0.35)), pytest.approx((0.4, 0.7))]
