"""The published results of docs/reproductions.md hold, in direction and with a stated
margin, when their studies (scenarios/studies/repro/) run at reduced size: one seed,
fewer rounds. The full-size numbers in the doc come from the commands it lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulation.scenario.sweep import resolve_study
from simulation.study.attack_rate import attack_rate, study_attack_rates
from simulation.study.compare import run_study
from simulation.study.selection import study_selection

REPRO = Path(__file__).resolve().parents[2] / "scenarios" / "studies" / "repro"


def _run(name: str, tmp_path: Path, *overrides: str) -> pd.DataFrame:
    study = resolve_study(REPRO / f"{name}.yaml", ["seed=1", *overrides], engine="inprocess")
    run_study(study, tmp_path, workers=1)
    table = pd.read_parquet(tmp_path / "study.parquet")
    assert (table["status"] == "ok").all(), table[["run_id", "status", "error"]]
    return table


def test_attack_rate_counts_source_samples_predicted_as_their_target() -> None:
    # Hand-derived: three 1s (two predicted 7), two 3s (one predicted 8), others ignored.
    y = np.array([1, 1, 1, 3, 3, 0, 7])
    pred = np.array([7, 7, 1, 8, 3, 7, 7])
    assert attack_rate(pred, y, {1: 7, 3: 8}) == pytest.approx(3 / 5)
    assert np.isnan(attack_rate(pred, np.array([0, 0, 0, 0, 0, 0, 0]), {1: 7}))


@pytest.mark.slow
def test_fung2020_foolsgold_stops_the_sybils_targeted_flip(tmp_path: Path) -> None:
    """Fung et al. 2020: 5 Sybils flipping 1 -> 7 succeed under FedAvg, not FoolsGold."""
    _run("fung2020_foolsgold", tmp_path, "rounds=4")
    table = study_attack_rates(tmp_path)
    rate = table.set_index("aggregation.strategy")["attack_rate"]
    # Full size (6 seeds): FedAvg 0.27-0.67, FoolsGold 0.00 on every seed.
    assert rate["foolsgold"] <= 0.05
    assert rate["fedavg"] >= rate["foolsgold"] + 0.15


@pytest.mark.slow
def test_fraboni2021_fedavg_with_free_riders_reaches_the_fair_clients_accuracy(
    tmp_path: Path,
) -> None:
    """Fraboni et al. 2021: FedAvg with plain or disguised free-riders converges to the
    fair clients' aggregate: the same accuracy as FedAvg over the fair clients alone."""
    table = _run("fraboni2021_free_riders", tmp_path, "rounds=4")
    fair = table.loc[table["clients.count"] == 7, "test_accuracy"].item()
    riders = table.loc[table["clients.count"] == 10].set_index("design")["test_accuracy"]
    assert len(riders) == 2
    assert fair >= 0.7  # the fair clients learn, so "equal" is not "equally untrained"
    for design, accuracy in riders.items():
        assert abs(accuracy - fair) <= 0.05, design


@pytest.mark.slow
def test_cao2021_fltrust_keeps_accuracy_where_krum_and_median_lose_it(tmp_path: Path) -> None:
    """Cao et al. 2021: with 60% sign-flipping clients FLTrust still learns from its root
    set; Krum and the median, left without an honest majority, do not."""
    table = _run("cao2021_fltrust", tmp_path, "rounds=4")
    accuracy = table.set_index("aggregation.strategy")["test_accuracy"]
    assert accuracy["fltrust"] >= 0.7
    assert accuracy["fltrust"] >= accuracy["krum"] + 0.3
    assert accuracy["fltrust"] >= accuracy["fedmedian"] + 0.3


@pytest.mark.slow
def test_bagdasaryan2020_one_replacement_attacker_plants_the_backdoor(tmp_path: Path) -> None:
    """Bagdasaryan et al. 2020: one attacker scaling its update by gamma = n / eta replaces
    the global model in a single round; without the scaling its backdoor is averaged away."""
    table = _run("bagdasaryan2020_replacement", tmp_path, "rounds=4", "timeline.0.start_round=4")
    success = table.set_index("population.0.params.replacement")["backdoor_success"]
    assert success[True] >= 0.8
    assert success[True] >= success[False] + 0.5


def _krum_choice(updates: np.ndarray, f: int) -> int:
    """Blanchard et al. 2017's Krum, written out here as the reference: the update with
    the least sum of squared distances to its n - f - 2 nearest others."""
    d = ((updates[:, None, :] - updates[None, :, :]) ** 2).sum(axis=2)
    k = len(updates) - f - 2
    scores = [np.sort(np.delete(row, i))[:k].sum() for i, row in enumerate(d)]
    return int(np.argmin(scores))


def test_baruch2019_alie_passes_krum_and_pulls_the_median() -> None:
    """Baruch et al. 2019, in the paper's regime (n = 50, m = 12, z_max = 0.583, honest
    gradients whose spread dwarfs their mean, as minibatch SGD gradients do): Krum
    selects a crafted update, and the coordinate median moves towards the crafted
    mu + z*sigma of the deltas (the paper's gradient mu - z*sigma; a delta is minus a
    gradient). Hand-derived with the exact mu and sigma: 38 (1 - Phi(x)) + 12 = 25 gives
    x = mu + 0.41 sigma; the colluders only estimate sigma from their 12 updates
    (ddof = 0, which shrinks it), so the shift measured is about 0.31 sigma, asserted in
    [0.2, 0.5]."""
    from agents import ALIEAttack
    from agents.coalition import ALIEParams

    rng = np.random.default_rng(0)
    n, m, d, mu, sigma = 50, 12, 2000, 0.1, 1.0
    names = [f"c{i}" for i in range(n)]
    honest = rng.normal(mu, sigma, size=(n, d))
    members = tuple(names[:m])
    attack = ALIEAttack(ALIEParams(members=members, num_clients=n, num_attackers=m))
    glob = [np.zeros(d)]
    crafted = attack.rewrite(1, members, {c: [honest[i]] for i, c in enumerate(names)}, glob, rng)
    updates = np.stack([crafted[c][0] if c in crafted else honest[i] for i, c in enumerate(names)])
    assert attack.z_for(n, m) == pytest.approx(0.5828, abs=1e-4)
    assert _krum_choice(updates, f=m) < m  # a colluder's update is the one kept
    shift = float((np.median(updates, axis=0) - np.median(honest[m:], axis=0)).mean())
    assert 0.2 * sigma <= shift <= 0.5 * sigma


@pytest.mark.slow
@pytest.mark.parametrize("study_file", ["baruch2019_alie.yaml", "baruch2019_alie_minibatch.yaml"])
def test_baruch2019_krum_keeps_the_colluders_crafted_update_in_a_run(
    tmp_path: Path, study_file: str
) -> None:
    """Baruch et al. 2019's mechanism, at run level in each study's own setting (n = 50,
    m = 12, z_max, one SGD step per round, server momentum 0.9; digits, or Synthetic-IID
    with one fresh minibatch of 128 per round), 8 rounds of seed 1: the client whose
    update Krum keeps (``aggregation_selected``) is a colluder in most rounds (full size,
    seed 1: 0.92 of 60 rounds on digits, 0.97 of 300 rounds on the minibatch study).
    Ground truth names the colluders; without the attack Krum keeps an honest update
    (only honest ones exist)."""
    import dataclasses
    import json

    from simulation import names

    study = resolve_study(
        REPRO / study_file,
        ["seed=1", "rounds=8", "output.baseline=false"],
        engine="inprocess",
    )
    krum = [v for v in study.variants if dict(v.params)["aggregation.strategy"] == "krum"]
    run_study(dataclasses.replace(study, variants=tuple(krum)), tmp_path, workers=1)
    (run,) = (tmp_path / "runs").iterdir()
    colluders = set(json.loads((run / "ground_truth.json").read_text())["attackers"])
    assert len(colluders) == 12
    metrics = pd.read_parquet(run / "metrics.parquet")
    kept = metrics[metrics["metric"] == names.AGGREGATION_SELECTED]
    assert sorted(kept["round"]) == list(range(1, 9))  # one kept update per round
    share = kept["client"].isin(colluders).mean()
    assert share >= 0.75
    assert study_selection(tmp_path)["attacker_selected"].item() == pytest.approx(share)


@pytest.mark.slow
def test_baruch2019_alie_drives_krum_off_on_seed_1(tmp_path: Path) -> None:
    """Baruch et al. 2019's accuracy effect at reduced size: the digits study's Krum
    design (n = 50, m = 12, z_max, one SGD step per round, server momentum 0.9) on
    seed 1 alone, its 60 rounds, without re-running the attack-free baseline.

    Measured (docs/reproductions.md): the attacked model peaks at 0.914 (round 30),
    then is driven off: 0.894 at round 45, 0.389 at round 46, a mean of 0.369 over
    rounds 51-60 and 0.403 at round 60, where the same run without the attack ends at
    0.825 (the study's baseline; clean Krum ends at 0.79-0.88 on seeds 1-6 and does
    not fall from its peak). Asserted, with margins: the peak is at least 0.85 and the
    last ten rounds' mean is under 0.6 and at least 0.3 below the peak. The collapse
    is seed-dependent in this setting (seeds 1, 3, 6 of 1-6; seeds 2, 4, 5 are not
    driven off by round 60), so this pins the effect where it was measured, not that
    it happens on every seed. An attack Krum does not keep ends near the clean run
    (z = 1.5, above z_max: 0.856 on seed 1), and the test then fails."""
    import dataclasses

    # Buyers and voters do not touch training (the same 0.403 at round 60 without them).
    overrides = ["seed=1", "output.baseline=false", "market.behaviours=[]"]
    study = resolve_study(REPRO / "baruch2019_alie.yaml", overrides, engine="inprocess")
    krum = [v for v in study.variants if dict(v.params)["aggregation.strategy"] == "krum"]
    run_study(dataclasses.replace(study, variants=tuple(krum)), tmp_path, workers=1)
    (run,) = (tmp_path / "runs").iterdir()
    metrics = pd.read_parquet(run / "metrics.parquet")
    acc = metrics[metrics["metric"] == "test_accuracy"].set_index("round")["value"]
    assert acc.index.max() == 60
    peak, last = float(acc.max()), float(acc.loc[51:60].mean())
    assert peak >= 0.85
    assert last < 0.6
    assert peak - last >= 0.3


def test_attacker_selected_share_counts_rounds_with_an_attackers_kept_update(
    tmp_path: Path,
) -> None:
    """Hand-made run files: round 1 keeps an attacker, round 2 an honest client, round 3
    (Multi-Krum) one of each, so 2 of the 3 rounds kept an attacker's update."""
    import json

    from simulation import names
    from simulation.study.selection import attacker_selected_share

    (tmp_path / "ground_truth.json").write_text(json.dumps({"attackers": ["a"]}))
    rows = [(1, "a"), (2, "h"), (3, "h"), (3, "a")]
    frame = pd.DataFrame(
        {
            "round": [r for r, _ in rows] + [1],
            "client": [c for _, c in rows] + ["a"],
            "metric": [names.AGGREGATION_SELECTED] * len(rows) + [names.FLAGGED],
            "value": 1.0,
        }
    )
    frame.to_parquet(tmp_path / "metrics.parquet")
    assert attacker_selected_share(tmp_path) == pytest.approx(2 / 3)
    frame[frame["metric"] == names.FLAGGED].to_parquet(tmp_path / "metrics.parquet")
    assert np.isnan(attacker_selected_share(tmp_path))
