"""Every shipped study (scenarios/studies/*.yaml) runs end to end at reduced size,
and the published result we reproduce holds in its direction even when tiny."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simulation.scenario.sweep import resolve_study
from simulation.study.compare import run_study

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "scenarios" / "studies").glob("*.yaml"))
REDUCED = ["rounds=2", "seed=1", "training.epochs=1"]


def test_the_three_studies_are_shipped() -> None:
    names = {p.stem for p in STUDIES}
    assert {"free_riders_vs_incentives", "sybil_vs_reputation", "poisoning_vs_aggregators"} <= (
        names
    )


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_runs_at_reduced_size(path: Path, tmp_path: Path) -> None:
    study = resolve_study(path, REDUCED, engine="inprocess")
    outcome = run_study(study, tmp_path, workers=1)
    table = pd.read_parquet(tmp_path / "study.parquet")
    assert len(table) == len(study.variants) >= 4
    assert (table["status"] == "ok").all(), table[["run_id", "status"]]
    assert (tmp_path / "summary.csv").exists()
    assert outcome is not None


def test_free_riders_earn_less_under_score_and_reputation(tmp_path: Path) -> None:
    study = resolve_study(
        ROOT / "scenarios" / "studies" / "free_riders_vs_incentives.yaml",
        REDUCED,
        engine="inprocess",
    )
    run_study(study, tmp_path, workers=1)
    table = pd.read_parquet(tmp_path / "study.parquet").set_index("rewards.mechanism")
    share = table["attacker_token_share"]
    # 3 of 10 clients ride free: equal split pays them exactly 30%.
    assert share["equal"] == pytest.approx(0.3)
    assert share["score"] < share["equal"]
    assert share["reputation"] < share["equal"]


@pytest.mark.parametrize("path", sorted(ROOT.glob("scenarios/studies/**/*.yaml")), ids=str)
def test_shipped_studies_have_seeds_enough_for_a_paired_test(path: Path) -> None:
    """Each shipped study claims a difference between designs; with n seeds the exact
    two-sided Wilcoxon p is at least 2 / 2^n (0.25 for 3), so n >= 6 (p can reach 1/32)."""
    import yaml

    seeds = yaml.safe_load(path.read_text())["seeds"]
    n = len(seeds) if isinstance(seeds, list) else seeds["count"]
    assert n >= 6


def test_an_equal_split_drives_the_large_owners_away(tmp_path: Path) -> None:
    """The claim of ``incentives_change_participation`` at 5 rounds, seed 1: rational
    owners who decide from what the mechanism pays them against the run's cost. The
    large owners (200 rows at 0.08 tokens per row and epoch) cost 48 tokens at 3 epochs
    in round 1 and 16 at 1 epoch after it; an equal split pays 10, data size 20.4.

    Margins: the large owners' participation is 1/5 (round 1 only) under equal and 1
    under data size; the final accuracy under data size is at least 0.05 above equal's
    (measured 0.572 against 0.478; at 10 rounds over 6 seeds see docs/incentives.md)."""
    import dataclasses

    from marketplace import Market

    study = resolve_study(
        ROOT / "scenarios" / "studies" / "incentives_change_participation.yaml",
        ["rounds=5", "seed=1"],
        engine="inprocess",
    )
    keep = tuple(
        v for v in study.variants if dict(v.params)["rewards.mechanism"] in ("equal", "data_size")
    )
    run_study(dataclasses.replace(study, variants=keep), tmp_path, workers=1)
    table = pd.read_parquet(tmp_path / "study.parquet").set_index("rewards.mechanism")
    large = table["group:large:participation"]
    assert large["equal"] == pytest.approx(1 / 5)
    assert large["data_size"] == pytest.approx(1.0)
    assert table["group:small:participation"].tolist() == [1.0, 1.0]
    assert table.loc["data_size", "test_accuracy"] >= table.loc["equal", "test_accuracy"] + 0.05

    # The chosen effort reaches training, the DP accounting and the cost rows.
    run = tmp_path / "runs" / str(table.loc["data_size", "run_id"])
    with Market.open(run / "ledger.db") as market:
        steps = {
            (e.data["round"], e.sender): e.data["privacy"]["steps"]  # type: ignore[index]
            for e in market.entries()
            if e.kind == "contribution"
        }
    # 200 rows at batch 16: q = 1/13, 13 steps an epoch; 30 rows: q = 1/2, 2 steps.
    assert [steps[(r, "client-000")] for r in (1, 2, 5)] == [39, 13, 13]
    assert [steps[(r, "client-009")] for r in (1, 2, 5)] == [6, 2, 2]
    metrics = pd.read_parquet(run / "metrics.parquet")
    cost = metrics[metrics["metric"] == "cost"].set_index(["round", "client"])["value"]
    assert cost[(1, "client-000")] == pytest.approx(48.0)
    assert cost[(2, "client-000")] == pytest.approx(16.0)
    assert cost[(2, "client-009")] == pytest.approx(2.4)
