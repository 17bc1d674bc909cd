"""The world on the in-process engine: ledger, rejections, budgets, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from marketplace import Market, audit_ledger
from simulation.engine.runner import run_scenario
from simulation.scenario.load import load_scenario
from tests.fixtures.references.dp_vectors import golden

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "clients.count=4",
    "rounds=3",
    "training.epochs=1",
    "privacy.budget=null",
]


def small(*extra: str, seed: int | None = None):  # type: ignore[no-untyped-def]
    return load_scenario(ROOT / "scenarios" / "quickstart.yaml", [*SMALL, *extra], seed)


def kinds(run_dir: Path) -> list[str]:
    with Market.open(run_dir) as m:
        return [e.kind for e in m.entries()]


def entries_of(run_dir: Path, kind: str) -> list[dict]:  # type: ignore[type-arg]
    with Market.open(run_dir) as m:
        return [dict(e.data) for e in m.entries() if e.kind == kind]


def test_run_writes_every_result_file(tmp_path: Path) -> None:
    out = run_scenario(small(), tmp_path, engine="inprocess")
    for name in (
        "manifest.json",
        "ledger.db",
        "metrics.parquet",
        "metrics.csv",
        "rounds.parquet",
        "rounds.csv",
        "model.safetensors",
        "scenario.yaml",
        "ground_truth.json",
        "groups.parquet",
    ):
        assert (tmp_path / name).exists(), name
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["ledger_head"] == out.result.head_hash
    assert manifest["seed"] == 42 and manifest["scenario"]["rounds"] == 3
    assert manifest["packages"]["flwr"] == "1.41.0"
    rounds = pd.read_parquet(tmp_path / "rounds.parquet")
    assert rounds["round"].tolist() == [0, 1, 2, 3]
    assert rounds["tokens_issued"].tolist() == [0.0, 100.0, 100.0, 100.0]
    assert (rounds["epsilon_max"].diff().dropna() > 0).all()  # ε composes upwards
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    assert list(metrics.columns) == ["round", "client", "metric", "value"]
    eps = metrics[(metrics.metric == "epsilon") & (metrics.client == "client-000")]
    assert eps["round"].tolist() == [1, 2, 3]
    assert audit_ledger(tmp_path).head_hash == out.result.head_hash


def test_a_round_whose_aggregation_fails_registers_no_version_and_pays_no_emission(
    tmp_path: Path,
) -> None:
    # Every update is farther than 1e-9 from the global model: all are rejected.
    run_scenario(small("rounds=2", "aggregation.max_update_norm=1e-9"), tmp_path,
                 engine="inprocess")  # fmt: skip
    rounds = pd.read_parquet(tmp_path / "rounds.parquet")
    assert rounds["aggregation_failed"].tolist() == [False, True, True]
    assert rounds["tokens_issued"].tolist() == [0.0, 0.0, 0.0]
    assert rounds["model_version"].isna().all()
    k = kinds(tmp_path)
    assert "model_version" not in k and "reward" not in k
    failed = entries_of(tmp_path, "aggregation_failed")
    assert failed == [{"round": 1, "reason": "no accepted update"},
                      {"round": 2, "reason": "no accepted update"}]  # fmt: skip
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    flag = metrics[metrics.metric == "aggregation_failed"]
    assert flag["value"].tolist() == [0.0, 1.0, 1.0]


def test_royalties_run_their_own_mechanism_and_pay_by_the_named_share_rule(
    tmp_path: Path,
) -> None:
    scenario = small("rounds=2", "rewards.mechanism=royalties", "rewards.revenue_share=equal",
                     "market.params.platform_fee_bps=1000", "timing.round_interval_s=3600",
                     "market.behaviours=[{behaviour: buyers, params: {rate_per_hour: 6}}]",
                     "market.prices={perpetual: {price: 0.5}}")  # fmt: skip
    run_scenario(scenario, tmp_path, engine="inprocess")
    rounds = pd.read_parquet(tmp_path / "rounds.parquet")
    assert rounds["tokens_issued"].tolist() == [0.0, 0.0, 0.0]  # revenue-funded: no emission
    versions = entries_of(tmp_path, "model_version")
    # Equal shares over the 4 accepted clients, whatever their example counts.
    assert [v["contributors"] for v in versions] == [
        {f"client-{i:03d}": 0.25 for i in range(4)}
    ] * 2
    payouts = entries_of(tmp_path, "revenue_payout")
    assert payouts
    for version in {p["version"] for p in payouts}:
        mine = [p for p in payouts if p["version"] == version]
        pool = sum(p["amount"] for p in mine)
        fee = sum(p["amount"] for p in mine if p["fee"])
        assert fee == pool * 1000 // 10_000  # the ledger's fee, stated in genesis


def test_ledger_records_the_economy(tmp_path: Path) -> None:
    run_scenario(small(), tmp_path, engine="inprocess")
    k = kinds(tmp_path)
    assert k[0] == "genesis"
    assert k.count("register") == 4 and k.count("stake") == 4
    assert k.count("contribution") == 12  # 4 clients × 3 rounds
    assert k.count("model_version") == 3
    with Market.open(tmp_path) as m:
        # 10 granted - 5 staked + 100 tokens/round split by data size over 3 rounds.
        total = sum(m.balance(f"client-{i:03d}") for i in range(4))
        assert total == 4 * 5_000_000 + 3 * 100_000_000
        assert m.staked("client-000") == 5_000_000
        assert m.versions()[-1].round == 3
    genesis = entries_of(tmp_path, "genesis")[0]
    assert genesis["seed"] == 42 and genesis["scenario_hash"] == small().sha256()


def test_bad_updates_are_rejected_recorded_and_the_round_goes_on(tmp_path: Path) -> None:
    sc = small(
        "faults=[{client: 1, kind: nan, rounds: [1]}, {client: 2, kind: wrong_shape},"
        " {client: 3, kind: crash, rounds: [2]}]"
    )
    out = run_scenario(sc, tmp_path, engine="inprocess")
    rejected = entries_of(tmp_path, "contribution_rejected")
    reasons = {(r["round"], r["client"]): r["reason"] for r in rejected}
    assert reasons[(1, "client-001")].startswith("non_finite: ")
    assert all(reasons[(r, "client-002")].startswith("wrong_shape: ") for r in (1, 2, 3))
    # The exception's class, never its text: the same on every host and engine.
    assert reasons[(2, "client-003")] == "client_error: raised RuntimeError"
    assert len(reasons) == 5
    accepted = [r.accepted for r in out.result.rounds[1:]]
    assert accepted == [2, 2, 3]
    assert out.result.rounds[-1].test_accuracy > 0.3
    assert audit_ledger(tmp_path).head_hash == out.result.head_hash


def test_budget_exhaustion_stops_clients_and_is_recorded(tmp_path: Path) -> None:
    # ~314 examples, batch 16: q = 1/20, 20 steps a round at σ = 1.5 → ε = 1.03 after one
    # round and 1.29 after two (δ = 1e-5; dp-accounting's values, orders 2..63). A budget
    # of 1.2 allows exactly one round.
    out = run_scenario(small("privacy.budget=1.2"), tmp_path, engine="inprocess")
    stops = entries_of(tmp_path, "privacy_budget_exhausted")
    assert sorted(s["client"] for s in stops) == [f"client-{i:03d}" for i in range(4)]
    assert all(s["round"] == 2 for s in stops)
    assert all(s["epsilon_next"] == pytest.approx(golden(1.5, 0.05, 40, 1e-5)) for s in stops)
    assert all(s["epsilon_spent"] == pytest.approx(golden(1.5, 0.05, 20, 1e-5)) for s in stops)
    assert [r.sampled for r in out.result.rounds[1:]] == [4, 0, 0]
    assert [r.tokens_issued for r in out.result.rounds[1:]] == [100.0, 0.0, 0.0]


def test_same_seed_same_ledger_head_and_metrics_other_seed_differs(tmp_path: Path) -> None:
    a = run_scenario(small(), tmp_path / "a", engine="inprocess")
    b = run_scenario(small(), tmp_path / "b", engine="inprocess")
    c = run_scenario(small(seed=7), tmp_path / "c", engine="inprocess")
    assert a.result.head_hash == b.result.head_hash
    assert a.result.head_hash != c.result.head_hash
    for name in ("metrics.parquet", "rounds.parquet"):
        assert_frame_equal(
            pd.read_parquet(tmp_path / "a" / name), pd.read_parquet(tmp_path / "b" / name)
        )
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (
        tmp_path / "b" / "model.safetensors"
    ).read_bytes()


def test_existing_run_is_not_overwritten_without_force(tmp_path: Path) -> None:
    from simulation.errors import RunError

    run_scenario(small("rounds=1"), tmp_path, engine="inprocess")
    with pytest.raises(RunError, match="already holds a run"):
        run_scenario(small("rounds=1"), tmp_path, engine="inprocess")
    run_scenario(small("rounds=1"), tmp_path, engine="inprocess", force=True)


def test_target_epsilon_calibrates_noise(tmp_path: Path) -> None:
    sc = small("privacy={mode: dp_sgd, target_epsilon: 4.0, delta: 1.0e-5}")
    out = run_scenario(sc, tmp_path, engine="inprocess")
    eps = out.result.final_epsilon
    assert max(eps.values()) <= 4.0
    assert min(eps.values()) > 3.5  # every client trained every round: lands near target


def test_non_private_baseline_spends_no_epsilon(tmp_path: Path) -> None:
    out = run_scenario(small("privacy={mode: none}"), tmp_path, engine="inprocess")
    assert out.result.final_epsilon == {}
    assert all(r.epsilon_max == 0.0 for r in out.result.rounds)
    contributions = entries_of(tmp_path, "contribution")
    assert all(c["epsilon"] is None for c in contributions)
