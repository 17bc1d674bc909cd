"""Figures are read back as Figure objects (content, not pixels) and saved deterministically."""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from marketplace import TOKEN, Market, PriceTerms, audit_ledger
from simulation.outputs.plots import (
    gini,
    load_run,
    load_study,
    lorenz,
    run_figures,
    study_figures,
)
from tests.keyring import KEYRING
from tests.outputs.conftest import LRS, RUN_FIGURES, SEEDS, STUDY_FIGURES


def test_gini_and_lorenz_golden() -> None:
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75)
    assert gini([1, 2, 3]) == pytest.approx(2 / 9)
    pop, cum = lorenz([0, 0, 0, 4])
    assert pop.tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert cum.tolist() == [0, 0, 0, 0, 1.0]


def test_run_figures_content(pristine_run: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = load_run(pristine_run)
    with caplog.at_level(logging.INFO, logger="fedmarket.outputs"):
        figs = run_figures(run)
    assert list(figs) == list(RUN_FIGURES)
    assert "no vote or license_purchase entries" in caplog.text
    ax_acc, ax_loss = figs["accuracy_loss"].axes
    (acc_line,) = ax_acc.get_lines()
    assert acc_line.get_ydata().tolist() == pytest.approx(run.rounds["test_accuracy"].tolist())
    assert len(ax_loss.get_lines()) == 1
    clients = sorted(run.behaviours())
    assert len(clients) == 4
    (ax_earn,) = figs["earnings"].axes
    assert len(ax_earn.get_lines()) == len(clients)
    final = [line.get_ydata()[-1] for line in ax_earn.get_lines()]
    assert sum(final) == pytest.approx(run.final_earnings().sum())
    (ax_share,) = figs["reward_share"].axes
    assert [t.get_text() for t in ax_share.get_legend().get_texts()] == ["honest"]
    (ax_eps,) = figs["epsilon"].axes
    labels = [line.get_label() for line in ax_eps.get_lines()]
    assert "ε max" in labels and "ε mean" in labels and "budget" in labels
    assert len(ax_eps.get_lines()) == len(clients) + 3
    (ax_lorenz,) = figs["lorenz"].axes
    assert "Gini" in ax_lorenz.get_lines()[1].get_label()
    ax_supply, ax_flow = figs["token_flows"].axes
    supply = ax_supply.get_lines()[0].get_ydata()
    mints = sum(e.data["amount"] for e in run.ledger if e.kind in ("mint", "reward"))
    assert supply[-1] == pytest.approx(mints / TOKEN)
    assert [t.get_text() for t in ax_flow.get_xticklabels()] == ["mint", "reward", "stake"]


def test_study_lines_per_design(study_dir: Path) -> None:
    study = load_study(study_dir)
    assert study.design_keys == ("training.lr",)
    assert list(study.designs) == [f"lr={lr}" for lr in LRS]
    assert all(len(runs) == len(SEEDS) for runs in study.designs.values())
    figs = study_figures(study)
    assert "attack_heatmap" not in figs  # no study table with attack columns
    ax_acc, ax_loss = figs["accuracy_loss"].axes
    # below 5 seeds: each design's mean and every seed as a thin line, no band
    per_design = 1 + len(SEEDS)
    assert len(ax_acc.get_lines()) == len(study.designs) * per_design
    assert len(ax_loss.get_lines()) == len(study.designs) * per_design
    assert not ax_acc.collections
    runs = study.designs[f"lr={LRS[0]}"]
    expected = np.mean([r.rounds["test_accuracy"].to_numpy() for r in runs], axis=0)
    assert ax_acc.get_lines()[0].get_ydata() == pytest.approx(expected)
    (ax_gini,) = figs["gini"].axes
    assert len(ax_gini.patches) == len(study.designs)


def test_attack_heatmap_when_columns_present(study_dir: Path) -> None:
    table = pd.DataFrame(
        {
            "aggregation": ["fedavg", "fedavg", "krum", "krum"],
            "attacker_fraction": [0.1, 0.3, 0.1, 0.3],
            "attack_success": [0.2, 0.9, 0.05, 0.4],
        }
    )
    study = replace(load_study(study_dir), table=table)
    fig = study_figures(study)["attack_heatmap"]
    ax = fig.axes[0]
    (image,) = ax.get_images()
    assert image.get_array().shape == (2, 2)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["fedavg", "krum"]
    assert image.get_array()[0, 1] == pytest.approx(0.9)


def test_votes_and_license_revenue(run_dir: Path) -> None:
    with Market.open(run_dir, readonly=False, keyring=KEYRING) as market:
        version = market.versions()[-1].version
        market.register_participant("buyer-000", role="buyer")
        market.mint("buyer-000", 50 * TOKEN, reason="test")
        market.set_price_list(version, {"standard": PriceTerms(price=7 * TOKEN)})
        market.buy_license("buyer-000", version, "standard")
        market.vote("client-000", version, 4.0)
        market.vote("client-001", version, 2.0)
        market.distribute_revenue(version)
        market.end_block()
    audit_ledger(run_dir)
    figs = run_figures(load_run(run_dir))
    ax_votes, ax_rev = figs["votes_licenses"].axes
    (ratings,) = ax_votes.get_lines()
    assert ratings.get_ydata().tolist() == [4.0, 3.0]  # running mean
    sales = next(line for line in ax_rev.get_lines() if line.get_label() == "license sales")
    assert sales.get_ydata()[-1] == pytest.approx(7.0)


def test_plot_twice_gives_identical_pdf_bytes(pristine_run: Path, tmp_path: Path) -> None:
    from simulation.outputs.plots import plot

    first = plot(pristine_run, tmp_path / "a", ("pdf",))
    second = plot(pristine_run, tmp_path / "b", ("pdf",))
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_plot_cli_defaults_to_run_plots(cli: typer.Typer, run_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["plot", str(run_dir)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (run_dir / "plots").iterdir())
    assert "accuracy_loss.pdf" in names and "accuracy_loss.png" in names
    assert len(names) == 14
    assert (run_dir / "plots" / "lorenz.pdf").read_bytes().startswith(b"%PDF")


def test_plot_cli_study_png_only(cli: typer.Typer, study_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "figs"
    result = CliRunner().invoke(cli, ["plot", str(study_dir), "--out", str(out), "--format", "png"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in STUDY_FIGURES)


@pytest.mark.parametrize("command", ["plot", "report"])
def test_missing_dir_is_one_line_exit_2(cli: typer.Typer, tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nope"
    result = CliRunner().invoke(cli, [command, str(missing)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {missing}: no such run or study directory"
    assert "Traceback" not in result.output


def test_not_a_run_dir(cli: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plot", str(tmp_path)])
    assert result.exit_code == 2
    assert "neither a run directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_format(cli: typer.Typer, pristine_run: Path, tmp_path: Path) -> None:
    args = ["plot", str(pristine_run), "--out", str(tmp_path), "--format", "gif"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "unknown figure format" in result.stderr


def test_attack_heatmap_rows_are_defences_and_columns_fractions(tmp_path: Path) -> None:
    """A study sweeping the attacker fraction × aggregator draws one row per aggregator."""
    from simulation.outputs.plots import study_figures
    from simulation.scenario.sweep import resolve_study
    from simulation.study.compare import run_study

    root = Path(__file__).resolve().parents[2]
    study = resolve_study(
        root / "scenarios" / "studies" / "backdoor_vs_fraction.yaml",
        ["rounds=2", "seed=1", "clients.count=10"],
        engine="inprocess",
    )
    run_study(study, tmp_path, workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Tight layout not applied"
        figures = study_figures(load_study(tmp_path))
    # The swept list item's field is the design, not the whole population list.
    fractions = ("0.1", "0.2", "0.3", "0.4")
    (ax_gini,) = figures["gini"].axes
    assert sorted(t.get_text() for t in ax_gini.get_yticklabels()) == [
        f"strategy={s}, fraction={f}" for s in ("fedavg", "fedmedian") for f in fractions
    ]
    heatmap = figures["attack_heatmap"]
    ax = heatmap.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert rows == ["strategy=fedavg", "strategy=fedmedian"]
    assert cols == list(fractions)


def _counts_table(counts: np.ndarray, names: list[str]) -> pd.DataFrame:
    rows = [
        (f"client-{i:03d}", "", k, names[k], int(counts[i, k]))
        for i in range(counts.shape[0])
        for k in range(counts.shape[1])
    ]
    return pd.DataFrame(rows, columns=["client", "natural_id", "label", "label_name", "count"])


def test_label_distribution_draws_the_stored_counts(run_dir: Path) -> None:
    """Flower Datasets' plot_label_distributions draws exactly the counts the run stored
    (no dataset is read): one stacked bar per client, one segment per label."""
    counts = np.array([[5, 0, 2], [1, 1, 1], [0, 7, 3]])
    _counts_table(counts, ["cat", "dog", "eel"]).to_parquet(run_dir / "label_counts.parquet")
    (run_dir / "label_counts.csv").unlink()
    fig = run_figures(load_run(run_dir))["label_distribution"]
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == counts.T.ravel().tolist()  # pandas stacks label by label
    # Flower lists the legend top segment first, as the bars stack.
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["eel", "dog", "cat"]
    assert ax.get_xlabel() == "client"


def test_label_distribution_heatmap_for_many_classes(run_dir: Path) -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, size=(4, 62))
    _counts_table(counts, [str(k) for k in range(62)]).to_parquet(run_dir / "label_counts.parquet")
    fig = run_figures(load_run(run_dir))["label_distribution"]
    (mesh,) = fig.axes[0].collections
    values = np.asarray(mesh.get_array()).reshape(62, 4)  # labels down, clients across
    np.testing.assert_array_equal(values, counts.T)


def test_runs_without_label_counts_skip_the_figure(run_dir: Path) -> None:
    (run_dir / "label_counts.parquet").unlink()
    (run_dir / "label_counts.csv").unlink()
    assert "label_distribution" not in run_figures(load_run(run_dir))
