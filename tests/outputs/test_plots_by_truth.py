"""Per-run figures by ground truth: coloured by attack role, one line per data owner,
the vote panel under the scenario's rating rule, fee lines not paid to contributors."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from marketplace import TOKEN, Market
from simulation.outputs.plots import (
    LedgerRecord,
    RunData,
    _fig_earnings,
    _fig_lorenz,
    _fig_reward_share,
    _fig_votes_licenses,
    rating_history,
)
from tests.keyring import KEYRING

TRUTH = {
    "attackers": ["client-002", "client-003"],
    "behaviours": {"client-000": "honest", "client-002": "honest", "client-003": "honest"},
    "owners": {"client-000": "client-000", "client-002": "client-002", "client-003": "client-002"},
    "roles": {"client-000": "honest", "client-002": "sybil", "client-003": "sybil"},
}


def _run(path: Path, ledger: tuple[LedgerRecord, ...] = (), rule: object = "mean") -> RunData:
    rows = [(1, "client-000", "reward_tokens", 6.0), (1, "client-002", "reward_tokens", 2.0),
            (1, "client-003", "reward_tokens", 2.0)]  # fmt: skip
    metrics = pd.DataFrame(rows, columns=["round", "client", "metric", "value"])
    manifest = {"scenario": {"market": {"rating_rule": rule}}}
    return RunData(path, manifest, pd.DataFrame(), metrics, TRUTH, ledger)


def test_earnings_are_per_owner_and_coloured_by_role(tmp_path: Path) -> None:
    run = _run(tmp_path)
    fig = _fig_earnings(run)
    assert fig is not None
    lines = fig.axes[0].get_lines()
    # two owners (the Sybil's two identities are one), 6 and 2 + 2 tokens
    assert sorted((str(ln.get_label()), float(ln.get_ydata()[-1])) for ln in lines) == [
        ("honest", 6.0),
        ("sybil", 4.0),
    ]
    share = _fig_reward_share(run)
    assert share is not None
    assert sorted(t.get_text() for t in share.axes[0].get_legend().get_texts()) == [
        "honest",
        "sybil",
    ]
    lorenz = _fig_lorenz(run)
    assert lorenz is not None  # owners [6, 4]: |6-4| * 2 / (2 * 4 * 5) = 0.1
    assert "Gini 0.100" in str(lorenz.axes[0].get_lines()[1].get_label())
    plt.close("all")


def _voted_market(path: Path) -> None:
    m = Market.create(path, keyring=KEYRING, seed=1, genesis={"scenario_hash": "votes"})
    for voter, stake in (("client-000", 3), ("client-001", 1)):
        m.register_participant(voter, role="data_owner")
        m.mint(voter, 5 * TOKEN, reason="grant")
        m.stake(voter, stake * TOKEN)
    m.register_model_version(
        round=1, parent=None, artifact_sha256="0" * 64, metrics={"test_accuracy": 0.5},
        contributors={"client-000": 1.0},
    )  # fmt: skip
    m.vote("client-000", "v0001", 5.0)
    m.vote("client-001", "v0001", 1.0)
    m.close()


def test_the_vote_panel_plots_the_scenarios_rating_rule(tmp_path: Path) -> None:
    _voted_market(tmp_path)
    # yuma (kappa 0.5): after the first vote, 5; after both, the voters scoring >= 5
    # hold 3/4 >= 0.5 of the stake, so c = 5, nothing is clipped: (3*5 + 1*1)/4 = 4.
    yuma = rating_history(tmp_path, "yuma", {"kappa": 0.5})
    assert [r for _, r in yuma["v0001"]] == pytest.approx([5.0, 4.0])
    # the plain running mean says 5 then 3
    assert [r for _, r in rating_history(tmp_path, "mean")["v0001"]] == pytest.approx([5.0, 3.0])
    with Market.open(tmp_path, readonly=True) as m:
        assert m.rating("v0001", rule="yuma") == pytest.approx(yuma["v0001"][-1][1])
        votes = tuple(
            LedgerRecord(e.seq, e.kind, e.sender, float(e.time), dict(e.data)) for e in m.entries()
        )
    fig = _fig_votes_licenses(_run(tmp_path, votes, {"name": "yuma", "params": {"kappa": 0.5}}))
    assert fig is not None
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_ydata()) == pytest.approx([5.0, 4.0])
    assert "yuma" in fig.axes[0].get_title()
    plt.close("all")


def test_fee_lines_are_not_paid_to_contributors(tmp_path: Path) -> None:
    records = (
        LedgerRecord(1, "license_purchase", "buyer-000", 10.0, {"version": "v0001"}),
        LedgerRecord(2, "revenue_payout", "treasury", 11.0,
                     {"to": "treasury", "amount": 1 * TOKEN, "fee": True}),
        LedgerRecord(3, "revenue_payout", "treasury", 11.0,
                     {"to": "client-000", "amount": 9 * TOKEN, "fee": False}),
    )  # fmt: skip
    fig = _fig_votes_licenses(_run(tmp_path, records))
    assert fig is not None
    (paid,) = [ln for ln in fig.axes[1].get_lines() if ln.get_label() == "paid to contributors"]
    assert float(paid.get_ydata()[-1]) == 9.0
    plt.close("all")
