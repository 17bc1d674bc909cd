"""Licence revenue is split by the configured rule, through the royalties mechanism,
on a real ledger: a 3-client round whose split is derived by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace import TOKEN, Market, audit_ledger
from marketplace.incentives import create_mechanism
from simulation import names
from simulation.config.prices import pricing_for
from simulation.config.schema import MarketConfig
from simulation.world.context import Recorder, RoundContext
from simulation.world.stages import RegisterVersion, SettleRevenue
from tests.keyring import KEYRING
from tests.world.fakes import federation
from tests.world.test_stages import reply

ACCOUNTS = ("client-000", "client-001", "client-002")


def _market(tmp_path: Path, fee_bps: int) -> Market:
    m = Market.create(
        tmp_path,
        keyring=KEYRING,
        seed=1,
        genesis={"scenario_hash": "r", "params": {"platform_fee_bps": fee_bps}},
    )
    for a in (*ACCOUNTS, "buyer-000"):
        m.register_participant(a, role="buyer" if a.startswith("buyer") else "data_owner")
    m.mint("buyer-000", 20 * TOKEN, reason="budget")
    return m


def _round(rule: str, tmp_path: Path, fee_bps: int = 500) -> tuple[Market, Recorder, dict]:  # type: ignore[type-arg]
    """Round 1: clients 0, 1, 2 send 10, 30, 60 examples with scores 1, 3, -2; the
    version is registered under ``rule`` and one 20-token licence is sold and settled."""
    market, fed, rec = _market(tmp_path, fee_bps), federation(3), Recorder()
    ctx = RoundContext(round=1, start=0.0, wall_start=0.0)
    ctx.accepted = [reply(0, 1.0, n=10), reply(1, 1.0, n=30), reply(2, 1.0, n=60)]
    ctx.scores = {"client-000": 1.0, "client-001": 3.0, "client-002": -2.0}
    prices = pricing_for(MarketConfig(prices={"perpetual": {"price": 20.0}}))  # type: ignore[dict-item]
    RegisterVersion(market, fed, prices, rule=create_mechanism(rule)).run(ctx)  # type: ignore[arg-type]
    market.buy_license("buyer-000", "v0001", "perpetual")
    royalties = create_mechanism("royalties", platform_fee_bps=fee_bps)
    SettleRevenue(market, fed, rec, royalties).run(ctx)
    got = {r.client: r.value for r in rec.rows if r.metric == names.ROYALTY_TOKENS}
    return market, rec, got


def test_equal_shares_split_the_revenue_in_thirds(tmp_path: Path) -> None:
    market, _, got = _round("equal", tmp_path)
    assert market.version("v0001").contributors == {a: pytest.approx(1 / 3) for a in ACCOUNTS}
    # Pool 20 tokens = 20_000_000; fee 5 % = 1_000_000; 19_000_000 / 3 = 6_333_333 1/3:
    # the leftover unit goes to the smallest account id (equal remainders).
    assert got == {"client-000": 6.333334, "client-001": 6.333333, "client-002": 6.333333}
    assert market.balance("treasury") == 1_000_000 and market.balance("pool:v0001") == 0
    audit_ledger(market.path)


def test_score_shares_pay_by_score_not_by_claimed_size(tmp_path: Path) -> None:
    market, _, got = _round("score", tmp_path)
    # Scores 1, 3, -2 (clipped to 0): shares 1/4, 3/4, none, whatever the 10/30/60 sizes.
    assert market.version("v0001").contributors == {"client-000": 0.25, "client-001": 0.75}
    # 19_000_000 · 1/4 = 4_750_000 and · 3/4 = 14_250_000; client-002 gets nothing.
    assert got == {"client-000": 4.75, "client-001": 14.25}
    assert market.balance("client-002") == 0


def test_data_size_shares_follow_claimed_examples_with_the_ledgers_fee(tmp_path: Path) -> None:
    market, _, got = _round("data_size", tmp_path, fee_bps=1_000)
    assert market.version("v0001").contributors == {
        "client-000": 0.1, "client-001": 0.3, "client-002": 0.6,
    }  # fmt: skip
    # Fee 10 % = 2_000_000; 18_000_000 by 10/30/60 = 1_800_000, 5_400_000, 10_800_000.
    assert got == {"client-000": 1.8, "client-001": 5.4, "client-002": 10.8}
    assert market.balance("treasury") == 2_000_000
