"""What a DP run publishes besides the model: train metrics on private batches only
when the scenario says so (then listed as outside the guarantee), example counts
always listed as public metadata, and every ε backed by its recorded mechanism."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from marketplace import Market, PrivacyAudit, audit_ledger
from simulation import names
from simulation.engine.runner import run_scenario
from simulation.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]
TINY = ["clients.count=2", "rounds=2", "training.epochs=1", "privacy.budget=null"]


@pytest.mark.parametrize("publish", [False, True], ids=["default", "published"])
def test_train_metrics_are_published_only_when_asked(publish: bool, tmp_path: Path) -> None:
    extra = [f"privacy.publish_train_metrics={str(publish).lower()}"]
    sc = load_scenario(ROOT / "scenarios" / "quickstart.yaml", [*TINY, *extra])
    run_scenario(sc, tmp_path, engine="inprocess")
    with Market.open(tmp_path) as m:
        contributions = [dict(e.data) for e in m.entries() if e.kind == "contribution"]
    assert contributions
    for c in contributions:
        assert set(c["metrics"]) == ({"train-loss", "train-accuracy"} if publish else set())
        assert c["privacy"]["steps"] > 0 and c["privacy"]["rdp_orders"] == "int-2-63"
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    published = set(metrics["metric"]) & {names.TRAIN_LOSS, names.TRAIN_ACCURACY}
    assert published == ({names.TRAIN_LOSS, names.TRAIN_ACCURACY} if publish else set())
    block = json.loads((tmp_path / "manifest.json").read_text())["privacy"]
    outside = block["outside_guarantee"]
    assert outside[0].startswith("num_examples")
    assert len(outside) == (2 if publish else 1)
    assert block["epsilon_max"]["pld"] < block["epsilon_max"]["rdp"]
    audit = PrivacyAudit()
    audit_ledger(tmp_path, checks=audit.checks())
    assert audit.checked == len(contributions) == 4


def test_pld_accountant_is_recorded_audited_and_reported(tmp_path: Path) -> None:
    sc = load_scenario(ROOT / "scenarios" / "quickstart.yaml", [*TINY, "privacy.accountant=pld"])
    out = run_scenario(sc, tmp_path, engine="inprocess")
    with Market.open(tmp_path) as m:
        contributions = [dict(e.data) for e in m.entries() if e.kind == "contribution"]
    assert {c["privacy"]["accountant"] for c in contributions} == {"pld"}
    audit = PrivacyAudit()
    audit_ledger(tmp_path, checks=audit.checks())
    assert audit.checked == 4
    block = json.loads((tmp_path / "manifest.json").read_text())["privacy"]
    worst = block["epsilon_max"]
    assert worst["pld"] == max(out.result.final_epsilon.values()) < worst["rdp"]
