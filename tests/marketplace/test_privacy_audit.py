"""The audit re-derives every recorded ε from the entry's mechanism parameters with
dp-accounting (golden values: tests/fixtures/references/dp_accounting.json, made by
dp-accounting in a scratch venv), and names the entry whose ε does not follow."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from marketplace import LedgerIntegrityError, Market, PrivacyAudit, audit_ledger
from marketplace.privacy_audit import RDP_ORDERS, Mechanism, rdp_epsilon
from simulation.cli.market import ledger_app
from tests.fixtures.references.dp_vectors import VECTORS, golden, mechanism
from tests.keyring import KEYRING


def mech(steps: int, **over: object) -> dict[str, object]:
    return mechanism(steps, **over)


def ledger(path: Path, second_epsilon: float) -> Path:
    """Two rounds of one client: 100 then 900 steps at σ = 1.1, q = 0.01; a
    rejected round of another client in between (it trained: it counts)."""
    m = Market.create(path, keyring=KEYRING, seed=1, genesis={"scenario_hash": "dp"})
    for c in ("client-000", "client-001"):
        m.register_participant(c, role="data_owner")
    eps100 = golden(1.1, 0.01, 100, 1e-5)
    common = {"update_hash": "ab" * 32, "num_examples": 100, "metrics": {}}
    m.record_contribution(round=1, client="client-000", epsilon=eps100, privacy=mech(100), **common)
    m.reject_contribution(
        round=1, client="client-001", reason="straggler", epsilon=eps100, privacy=mech(100)
    )
    m.record_contribution(
        round=2, client="client-000", epsilon=second_epsilon, privacy=mech(900), **common
    )
    m.end_block()
    m.close()
    return path


def test_orders_are_the_integers_the_vectors_used() -> None:
    assert tuple(float(a) for a in range(2, 64)) == RDP_ORDERS
    assert tuple(VECTORS["orders"]) == RDP_ORDERS
    assert not any(r["dropped_orders"] for r in VECTORS["rdp"])


def test_honest_ledger_verifies_and_every_epsilon_is_rederived(tmp_path: Path) -> None:
    audit = PrivacyAudit()
    audit_ledger(ledger(tmp_path, golden(1.1, 0.01, 1000, 1e-5)), checks=audit.checks())
    assert audit.checked == 3
    assert audit.histories["client-000"] == [(1.1, 0.01, 100), (1.1, 0.01, 900)]
    assert audit.max_rel_error < 1e-9  # same library, same orders: float noise only


def test_edited_epsilon_fails_naming_the_entry(tmp_path: Path) -> None:
    eps = golden(1.1, 0.01, 1000, 1e-5)  # 1.7117701662...
    path = ledger(tmp_path / "run", eps * (1 - 3e-6))  # under-reported by 3e-6 relative
    seq = len(list(Market.open(path).entries())) - 2  # the second contribution
    with pytest.raises(LedgerIntegrityError, match="client-000: recorded ε") as info:
        audit_ledger(path, checks=PrivacyAudit().checks())
    assert info.value.seq == seq
    result = CliRunner().invoke(ledger_app, ["verify", str(path)])
    assert result.exit_code == 3
    assert f"#{seq}" in result.output and "dp-accounting (rdp) derives" in result.output


def test_within_tolerance_passes(tmp_path: Path) -> None:
    eps = golden(1.1, 0.01, 1000, 1e-5)
    audit_ledger(ledger(tmp_path, eps * (1 + 5e-7)), checks=PrivacyAudit().checks())


def test_an_epsilon_without_mechanism_is_refused(tmp_path: Path) -> None:
    m = Market.create(tmp_path, keyring=KEYRING, seed=1, genesis={"scenario_hash": "dp"})
    m.register_participant("client-000", role="data_owner")
    m.record_contribution(
        round=1, client="client-000", update_hash="ab" * 32, num_examples=1, epsilon=0.5,
        metrics={},
    )  # fmt: skip
    m.close()
    with pytest.raises(LedgerIntegrityError, match="no mechanism parameters"):
        audit_ledger(tmp_path, checks=PrivacyAudit().checks())


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("mechanism", "laplace", "unknown privacy mechanism"),
        ("accountant", "prv", "unknown accountant"),
        ("rdp_orders", "my-orders", "unknown RDP order set"),
        ("steps", -1, "not a step count"),
        ("noise_multiplier", "1.1", "'noise_multiplier' is not a number"),
        ("sample_rate", 1.5, "q outside"),
    ],
)
def test_bad_mechanism_records_are_named(field: str, value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Mechanism.from_json(mech(10) | {field: value})


def test_pld_entries_are_rederived_with_their_recorded_discretisation(tmp_path: Path) -> None:
    # A coarse interval keeps the test fast; the vectors' PLD points are checked at
    # the runner's 1e-4 in tests/simulation/test_privacy.py.
    pld = mech(40, noise_multiplier=1.5, sample_rate=0.125, accountant="pld")
    pld = {k: v for k, v in pld.items() if k != "rdp_orders"} | {"pld_discretization": 1e-2}
    m = Market.create(tmp_path, keyring=KEYRING, seed=1, genesis={"scenario_hash": "dp"})
    m.register_participant("client-000", role="data_owner")
    row = VECTORS["pld"][1]  # σ 1.5, q 0.125, 40 steps: 2.8826 at 1e-4
    common = {"update_hash": "ab" * 32, "num_examples": 8, "metrics": {}}
    m.record_contribution(round=1, client="client-000", epsilon=1.0, privacy=pld, **common)
    m.close()
    with pytest.raises(LedgerIntegrityError, match=r"dp-accounting \(pld\) derives") as info:
        audit_ledger(tmp_path, checks=PrivacyAudit().checks())
    derived = float(str(info.value).split("derives ")[1].split(" ")[0])
    # Coarser discretisation: a pessimistic bound, above the fine value by < 2 intervals.
    assert row["epsilon"] < derived < row["epsilon"] + 2e-2


def test_rdp_is_linear_in_steps_across_rounds() -> None:
    # Composition over heterogeneous rounds equals the one-shot value only when the
    # (σ, q) agree; the vectors give the one-shot values.
    split = rdp_epsilon(((1.1, 0.01, 100), (1.1, 0.01, 900)), 1e-5)
    assert split == pytest.approx(golden(1.1, 0.01, 1000, 1e-5), rel=1e-12)


def test_a_repeated_privacy_record_is_parsed_once_but_checked_by_type() -> None:
    """The hook parses each distinct record once; ``steps: true`` is not the cached
    ``steps: 1`` (equal and hash-equal in Python) and is still refused."""
    audit = PrivacyAudit()
    assert audit._mechanism(mech(1)) is audit._mechanism(mech(1))
    with pytest.raises(ValueError, match="not a step count"):
        audit._mechanism(mech(True))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'delta' is not a number"):
        audit._mechanism(mech(1, delta=[1e-5]))  # unhashable: parsed, refused
