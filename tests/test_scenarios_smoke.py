"""Every file in scenarios/ runs (at reduced size) and leaves a ledger that verifies.

Like Mesa's test_examples: a scenario that no longer runs is a broken example.
Full size is the CLI's job (`fedmarket run scenarios/X.yaml --out runs/X`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from marketplace import PrivacyAudit, audit_ledger
from simulation import names
from simulation.engine.runner import run_scenario
from simulation.results.metrics import run_metrics
from simulation.scenario.load import load_scenario
from tests.pins.pins import SCENARIOS, load_pins, pin_of_run, reduced

PINS = load_pins()


def test_scenarios_exist_and_open_with_a_comment() -> None:
    assert len(SCENARIOS) >= 18
    for path in SCENARIOS:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# "), f"{path.name} must open with a comment"
        assert "Follows:" in path.read_text(), f"{path.name} must name the paper it follows"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_runs_at_reduced_size(path: Path, tmp_path: Path) -> None:
    scenario = load_scenario(path, reduced(path))
    outcome = run_scenario(scenario, tmp_path, engine="inprocess")
    assert len(outcome.result.rounds) == 4
    # Every recorded ε is re-derived from its entry's mechanism with dp-accounting.
    audit = audit_ledger(tmp_path, checks=PrivacyAudit().checks())
    assert audit.head_hash == outcome.result.head_hash
    # Behaviour pin: a change of either value is a change of behaviour, made on
    # purpose in a commit that updates tests/pins/scenarios.json and says why.
    assert pin_of_run(tmp_path, outcome.result.head_hash) == PINS[path.stem]
    # One definition of the attacking owners: the last round's running share is
    # summary.csv's (training and market attackers' owners alike).
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    shares = metrics[metrics["metric"] == names.ATTACKER_TOKEN_SHARE].sort_values("round")
    if not shares.empty:
        summary = run_metrics(tmp_path)["attacker_token_share"]
        assert shares["value"].iloc[-1] == pytest.approx(summary, rel=1e-12, abs=1e-15)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    gt = json.loads((tmp_path / "ground_truth.json").read_text())
    groups = {g.group for g in scenario.population if g.is_attacker}
    if groups:
        assert gt["attackers"], "attack scenarios name their attackers"
    if scenario.output.baseline:
        assert manifest["baseline_accuracy"] is not None
        assert (tmp_path / "baseline" / "ledger.db").exists()
