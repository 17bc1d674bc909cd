"""Licenses, revenue split, votes, rating rules and reputation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from marketplace import (
    RATING_RULES,
    Ballot,
    InsufficientFunds,
    LicenseError,
    Market,
    PriceTerms,
    RegistryError,
    VoteError,
    audit_ledger,
    largest_remainder,
)
from marketplace.ratings import make_rating_rule, yuma_consensus
from tests.keyring import KEYRING
from tests.marketplace.conftest import Clock

PRICES = {
    "research": PriceTerms(price=100, duration=50.0, max_uses=2),
    "commercial": PriceTerms(price=1000, duration=None, max_uses=None),
}


@pytest.fixture
def market(tmp_path: Path, clock: Clock) -> Market:
    params = {"platform_fee_bps": 1000, "vote_min_stake": 10, "reputation_half_life": 100.0}
    m = Market.create(
        tmp_path,
        keyring=KEYRING,
        seed=1,
        genesis={"scenario_hash": "l", "params": params},
        clock=clock,
    )
    for a in ("client-000", "client-001", "client-002", "buyer-000", "buyer-001"):
        m.register_participant(a, role="buyer" if a.startswith("buyer") else "data_owner")
        m.mint(a, 5000, reason="airdrop")
    m.register_model_version(
        round=1,
        parent=None,
        artifact_sha256="0" * 64,
        metrics={"accuracy": 0.9},
        contributors={"client-000": 2.0, "client-001": 1.0},
        prices=PRICES,
    )
    return m


def test_license_lifecycle(market: Market, clock: Clock) -> None:
    lic = market.buy_license("buyer-000", "v0001", "research")
    assert market.balance("buyer-000") == 4900
    assert market.balance("pool:v0001") == 100
    clock.t = 10.0
    market.use_license("buyer-000", lic)
    market.use_license("buyer-000", lic)
    assert market.license(lic).uses == 2
    with pytest.raises(LicenseError, match="exhausted"):
        market.use_license("buyer-000", lic)
    lic2 = market.buy_license("buyer-000", "v0001", "research")
    clock.t = 10.0 + 50.0
    with pytest.raises(LicenseError, match="expired"):
        market.use_license("buyer-000", lic2)
    with pytest.raises(LicenseError, match="belongs to"):
        market.use_license("buyer-001", lic2)
    with pytest.raises(LicenseError, match="offers"):
        market.buy_license("buyer-000", "v0001", "military")
    with pytest.raises(LicenseError, match="unknown license"):
        market.use_license("buyer-000", "lic-999999")
    with pytest.raises(RegistryError):
        market.buy_license("buyer-000", "v0042", "research")
    commercial = market.buy_license("buyer-001", "v0001", "commercial")
    market.use_license("buyer-001", commercial, units=1000)
    for _ in range(4):
        market.buy_license("buyer-001", "v0001", "commercial")
    assert market.balance("buyer-001") == 0
    with pytest.raises(InsufficientFunds):
        market.buy_license("buyer-001", "v0001", "commercial")
    audit_ledger(market.path)


def test_revenue_split_after_fee(market: Market) -> None:
    market.buy_license("buyer-000", "v0001", "commercial")
    market.buy_license("buyer-001", "v0001", "research")
    pool = market.balance("pool:v0001")
    assert pool == 1100
    before = {a: market.balance(a) for a in ("client-000", "client-001", "treasury")}
    entries = market.distribute_revenue("v0001")
    assert all(e.kind == "revenue_payout" for e in entries)
    assert market.balance("pool:v0001") == 0
    fee = 110  # 10 %
    assert market.balance("treasury") - before["treasury"] == fee
    assert market.balance("client-000") - before["client-000"] == 660  # 2/3 of 990
    assert market.balance("client-001") - before["client-001"] == 330
    assert market.state.total_held() == market.supply
    assert market.distribute_revenue("v0001") == []
    audit_ledger(market.path)


def test_largest_remainder() -> None:
    assert largest_remainder(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert sum(largest_remainder(1001, {"x": 0.3, "y": 0.7}).values()) == 1001
    assert largest_remainder(5, {"a": 0.0}) == {}


def test_votes(market: Market) -> None:
    with pytest.raises(VoteError, match="stake"):
        market.vote("client-000", "v0001", 4)
    for a in ("client-000", "client-001", "client-002"):
        market.stake(a, 10 if a != "client-002" else 40)
    with pytest.raises(VoteError, match=r"\[0, 5\]"):
        market.vote("client-000", "v0001", 6)
    market.vote("client-000", "v0001", 4)
    with pytest.raises(VoteError, match="already voted"):
        market.vote("client-000", "v0001", 3)
    with pytest.raises(RegistryError):
        market.vote("client-001", "v0404", 3)
    market.vote("client-001", "v0001", 2)
    market.vote("client-002", "v0001", 5)
    assert market.rating("v0001") == pytest.approx(11 / 3)
    # yuma: stakes 10, 10, 40; consensus = 5 (client-002 holds 2/3 >= 1/2)
    assert market.rating("v0001", rule="yuma") == pytest.approx((40 + 20 + 200) / 60)
    with pytest.raises(ValueError, match="valid names: mean, reputation_weighted, yuma"):
        market.rating("v0001", rule="median")
    audit_ledger(market.path)


def test_rating_rules_golden() -> None:
    ballots = [Ballot("a", 5.0, 1, 4.0), Ballot("b", 1.0, 1, 1.0), Ballot("c", 3.0, 8, 0.0)]
    assert RATING_RULES.get("mean")(ballots) == pytest.approx(3.0)
    # weights sqrt(4)=2, sqrt(1)=1, 0 -> (10 + 1) / 3
    assert RATING_RULES.get("reputation_weighted")(ballots) == pytest.approx(11 / 3)
    # consensus: stake-weighted median from the top is 3 (c holds 8/10); a clipped to 3
    assert yuma_consensus([5, 1, 3], [1, 1, 8]) == 3
    assert RATING_RULES.get("yuma")(ballots) == pytest.approx((3 + 1 + 24) / 10)
    # a small-stake minority cannot inflate: two whales say 2, a shill says 5
    shill = [Ballot("w1", 2.0, 50, 0), Ballot("w2", 2.0, 50, 0), Ballot("s", 5.0, 1, 0)]
    assert RATING_RULES.get("yuma")(shill) == pytest.approx(2.0)
    assert RATING_RULES.get("mean")(shill) == pytest.approx(3.0)


def test_reputation_decays(market: Market, clock: Clock) -> None:
    market.record_quality(round=1, client="client-000", score=1.0)
    assert market.reputation("client-000") == pytest.approx(1.0)
    clock.t = 100.0
    assert market.reputation("client-000", now=100.0) == pytest.approx(0.5)
    market.reject_contribution(round=2, client="client-000", reason="norm too large")
    assert market.reputation("client-000", now=100.0) == pytest.approx(0.0)
    market.record_quality(round=2, client="client-001", score=0.8)
    market.mint("client-001", 1, reason="x")
    market.stake("client-001", 1)
    market.slash("client-001", 1, reason="backdoor")
    assert market.reputation("client-001") == 0.0
    assert math.isclose(market.reputation("client-002"), 0.0)


def test_reputation_rewards_vote_agreement(market: Market) -> None:
    for a in ("client-000", "client-001", "client-002"):
        market.stake(a, 10)
    market.vote("client-000", "v0001", 4)
    market.vote("client-001", "v0001", 4)
    market.vote("client-002", "v0001", 0)
    # Each voter is compared with the median of the *other* ballots:
    # client-000: median(4, 0) = 2 → 0.5·(1 − 2/5) − 0.25 = 0.05
    # client-002: median(4, 4) = 4 → 0.5·(1 − 4/5) − 0.25 = −0.15 → clipped to 0
    assert market.reputation("client-000") == pytest.approx(0.05)
    assert market.reputation("client-002") == 0.0


def test_voting_alone_earns_nothing_and_voting_often_is_bounded(tmp_path: Path) -> None:
    m = Market.create(tmp_path, seed=3, genesis={"scenario_hash": "r"}, keyring=KEYRING)
    for v in ("a", "b"):
        m.register_participant(v, role="voter")
    for i in range(1, 21):
        m.register_model_version(
            round=i, parent=None, artifact_sha256=f"{i:064x}", metrics={}, contributors={}
        )
    m.vote("a", "v0001", 5.0)  # no other ballot on v0001: no consensus, nothing earned
    assert m.reputation("a") == 0.0
    for i in range(2, 21):  # 19 votes in perfect agreement with b
        m.vote("a", f"v{i:04d}", 3.0)
        m.vote("b", f"v{i:04d}", 3.0)
    # The voting part is a mean of agreements (each 0.25), not a sum of 19.
    assert m.reputation("a") == pytest.approx(0.25)


def test_votes_of_accounts_without_the_earning_stake_earn_nothing(tmp_path: Path) -> None:
    genesis = {"scenario_hash": "r", "params": {"vote_earn_min_stake": 5}}
    m = Market.create(tmp_path, seed=4, genesis=genesis, keyring=KEYRING)
    for v in ("staked", "unstaked", "other"):
        m.register_participant(v, role="voter")
    m.mint("staked", 5, reason="grant")
    m.stake("staked", 5)
    m.register_model_version(
        round=1, parent=None, artifact_sha256="1" * 64, metrics={}, contributors={}
    )
    for v in ("staked", "unstaked", "other"):
        m.vote(v, "v0001", 4.0)
    assert m.reputation("staked") == pytest.approx(0.25)
    assert m.reputation("unstaked") == 0.0


def test_min_reputation_to_vote(tmp_path: Path) -> None:
    m = Market.create(
        tmp_path,
        keyring=KEYRING,
        seed=2,
        genesis={"scenario_hash": "r", "params": {"vote_min_reputation": 0.5}},
    )
    m.register_participant("v", role="validator")
    m.register_model_version(
        round=0, parent=None, artifact_sha256="1" * 64, metrics={}, contributors={}
    )
    with pytest.raises(VoteError, match="reputation"):
        m.vote("v", "v0001", 3)
    m.record_quality(round=0, client="v", score=0.9)
    m.vote("v", "v0001", 3)
    m.close()


def test_registry_validation(market: Market) -> None:
    with pytest.raises(RegistryError, match="parent"):
        market.register_model_version(
            round=2, parent="v0009", artifact_sha256="0" * 64, metrics={}, contributors={}
        )
    with pytest.raises(RegistryError, match="hex"):
        market.register_model_version(
            round=2, parent=None, artifact_sha256="xyz", metrics={}, contributors={}
        )
    v = market.register_model_version(
        round=2,
        parent="v0001",
        artifact_sha256="1" * 64,
        metrics={"accuracy": 0.95, "recall_gap": 0.02},
        contributors={"client-002": 1.0},
    )
    assert v == "v0002" and market.version(v).parent == "v0001"
    market.set_price_list(v, {"research": PriceTerms(price=0)})
    lic = market.buy_license("buyer-000", v, "research")
    market.use_license("buyer-000", lic, units=5)


def test_yuma_rating_has_no_fallback_at_zero_stake() -> None:
    unstaked = [Ballot("a", 5.0, 0, 1.0), Ballot("b", 1.0, 0, 1.0)]
    with pytest.raises(ValueError, match="positive total stake"):
        RATING_RULES.get("yuma")(unstaked)


def test_yuma_kappa_is_a_parameter() -> None:
    # Stakes 1, 1, 8 with scores 5, 1, 3. κ = 0.5: C = 3 (c alone holds 0.8) → 28/10.
    # κ = 0.95: from the top 5 (0.1), 3 (0.9), 1 (1.0 ≥ 0.95) → C = 1, every score
    # clipped to 1 → rating 1.
    ballots = [Ballot("a", 5.0, 1, 0.0), Ballot("b", 1.0, 1, 0.0), Ballot("c", 3.0, 8, 0.0)]
    assert make_rating_rule("yuma", {"kappa": 0.5})(ballots) == pytest.approx(2.8)
    assert make_rating_rule("yuma", {"kappa": 0.95})(ballots) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="takes no parameter beta"):
        make_rating_rule("yuma", {"beta": 1.0})
    with pytest.raises(ValueError, match="'mean' takes no parameter kappa"):
        make_rating_rule("mean", {"kappa": 0.5})
    with pytest.raises(ValueError, match="kappa must be in"):
        make_rating_rule("yuma", {"kappa": 0.0})


def test_imported_version_keeps_its_metadata_and_can_be_sold(tmp_path: Path) -> None:
    """A version registered with ``imported`` metadata (a Hub model) is an ordinary
    version: priced, licensed and its revenue paid out (to the treasury: no
    contributors); the metadata is signed and survives replay and audit."""
    run = tmp_path / "imp"
    m = Market.create(run, seed=4, genesis={"scenario_hash": "imp"}, keyring=KEYRING)
    m.register_participant("buyer-000", role="buyer")
    m.mint("buyer-000", 500, reason="airdrop")
    meta = {"name": "acme/tiny", "task": "fill-mask", "files": [{"path": "a", "size": 1}]}
    v = m.register_model_version(
        round=0,
        parent=None,
        artifact_sha256="2" * 64,
        metrics={"parameters": 10.0},
        contributors={},
        prices={"research": PriceTerms(price=100)},
        imported=meta,
    )
    m.buy_license("buyer-000", v, "research")
    (payout,) = m.distribute_revenue(v)
    assert payout.data["to"] == "treasury" and payout.data["amount"] == 100
    m.end_block()
    m.close()
    with Market.open(run) as again:
        assert again.version(v).imported == meta
        assert again.version(v).metrics == {"parameters": 10.0}
    audit_ledger(run)


def test_imported_must_be_a_mapping(market: Market) -> None:
    with pytest.raises(RegistryError, match="imported"):
        market.register_model_version(
            round=0,
            parent=None,
            artifact_sha256="3" * 64,
            metrics={},
            contributors={},
            imported="not a mapping",  # type: ignore[arg-type]
        )
