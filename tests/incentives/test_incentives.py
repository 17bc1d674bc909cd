"""Incentive mechanisms: golden allocations, exact-sum property, settlement via a fake market."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.incentives import (
    MECHANISMS,
    Allocation,
    Capped,
    ContributionInfo,
    DataSizeMechanism,
    EqualMechanism,
    MinimumQuality,
    ReputationMechanism,
    RoundOutcome,
    RoyaltiesMechanism,
    ScoreMechanism,
    StakeSlashMechanism,
    create_mechanism,
    largest_remainder,
)


class FakeMarket:
    """Records facade calls instead of writing a ledger (a SettlementMarket)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def reward(self, *, round: int, allocations: Mapping[str, int], mechanism: str) -> None:
        self.calls.append(("reward", (round, dict(allocations), mechanism)))

    def slash(self, account: str, amount: int, *, reason: str) -> None:
        self.calls.append(("slash", (account, amount, reason)))

    def transfer(self, sender: str, to: str, amount: int, *, memo: str = "") -> None:
        self.calls.append(("transfer", (sender, to, amount)))


def info(account: str, n: int = 1, accepted: bool = True, score: float | None = None) -> Any:
    return ContributionInfo(account=account, num_examples=n, accepted=accepted, score=score)


def outcome(*contributions: ContributionInfo, emission: int = 100) -> RoundOutcome:
    return RoundOutcome(round=3, emission=emission, contributions=tuple(contributions))


def test_data_size_tie_goes_to_smallest_account_id() -> None:
    """100 over sizes 1,1,1: floors 33 each, the one leftover unit goes to the
    largest remainder; all remainders tie (1/3), so the smallest id wins."""
    result = DataSizeMechanism().run(
        outcome(info("client-002"), info("client-000"), info("client-001"))
    )
    assert dict(result.amounts) == {"client-000": 34, "client-001": 33, "client-002": 33}
    assert list(result.amounts) == ["client-000", "client-001", "client-002"]


def test_data_size_golden() -> None:
    """Sizes 100, 300, 600 of 1000 units: exact quotas 100, 300, 600."""
    result = DataSizeMechanism().run(
        outcome(info("a", 100), info("b", 300), info("c", 600), emission=1000)
    )
    assert dict(result.amounts) == {"a": 100, "b": 300, "c": 600}


def test_equal_split_with_rejected_client() -> None:
    result = EqualMechanism().run(outcome(info("a"), info("b", accepted=False), info("c")))
    assert dict(result.amounts) == {"a": 50, "b": 0, "c": 50}
    assert result.mechanism == "equal" and result.slashes == ()


def test_nobody_eligible_spends_nothing() -> None:
    result = EqualMechanism().run(outcome(info("a", accepted=False)))
    assert dict(result.amounts) == {}
    market = FakeMarket()
    EqualMechanism().settle(result, market)
    assert market.calls == []


def test_score_with_negatives_clipped() -> None:
    """Scores 0.3, -0.2, 0.1 → weights 0.3, 0, 0.1 → 75, 0, 25."""
    result = ScoreMechanism().run(
        outcome(info("a", score=0.3), info("b", score=-0.2), info("c", score=0.1))
    )
    assert dict(result.amounts) == {"a": 75, "b": 0, "c": 25}


def test_score_requires_scores() -> None:
    with pytest.raises(ValueError, match="needs a score"):
        ScoreMechanism().run(outcome(info("a")))


def test_reputation_weighted() -> None:
    """Reputations 0.9, 0.3, unknown (default 0) → 75, 25, 0."""
    mech = ReputationMechanism(reputation={"a": 0.9, "b": 0.3})
    assert dict(mech.run(outcome(info("a"), info("b"), info("c"))).amounts) == {
        "a": 75,
        "b": 25,
        "c": 0,
    }


def test_stake_slash_pays_base_and_slashes_flagged() -> None:
    mech = StakeSlashMechanism(slash_amount=7, base="data_size", min_score=0.0)
    result = mech.run(
        outcome(
            info("a", 30, score=0.2),
            info("b", 10, score=-0.1),
            info("c", 10, accepted=False),
            info("d", 10, score=0.1),
        )
    )
    assert dict(result.amounts) == {"a": 75, "b": 0, "c": 0, "d": 25}
    assert [(s.account, s.amount) for s in result.slashes] == [("b", 7), ("c", 7)]
    assert "below" in result.slashes[0].reason and "rejected" in result.slashes[1].reason
    assert result.mechanism == "stake_slash(data_size)"
    market = FakeMarket()
    mech.settle(result, market)
    assert market.calls == [
        ("reward", (3, {"a": 75, "d": 25}, "stake_slash(data_size)")),
        ("slash", ("b", 7, result.slashes[0].reason)),
        ("slash", ("c", 7, "contribution rejected by validation")),
    ]


def test_royalties_after_fee() -> None:
    """Revenue 1000, fee 10 % → treasury keeps 100; 900 split 1:2 → 300, 600."""
    mech = RoyaltiesMechanism(platform_fee_bps=1000)
    sale = RoundOutcome.license_sale(round=5, revenue=1000, contributors={"x": 1.0, "y": 2.0})
    result = mech.run(sale)
    assert dict(result.amounts) == {"treasury": 100, "x": 300, "y": 600}
    assert result.spent == 1000 and result.funding == "revenue"
    market = FakeMarket()
    mech.settle(result, market)
    assert market.calls == [
        ("transfer", ("treasury", "x", 300)),
        ("transfer", ("treasury", "y", 600)),
    ]


def test_capped_redistributes_excess() -> None:
    """Sizes 8,1,1 of 100 with a 50 % cap: a is capped at 50, b and c split 50."""
    mech = Capped(inner=DataSizeMechanism(), max_share=0.5)
    result = mech.run(outcome(info("a", 8), info("b", 1), info("c", 1)))
    assert dict(result.amounts) == {"a": 50, "b": 25, "c": 25}
    assert result.mechanism == "capped(data_size)"


def test_capped_infeasible_leaves_rest_unspent() -> None:
    mech = Capped(inner=EqualMechanism(), max_share=0.25)
    result = mech.run(outcome(info("a"), info("b")))
    assert dict(result.amounts) == {"a": 25, "b": 25}


def test_minimum_quality_zeroes_low_scores_and_forwards() -> None:
    mech = MinimumQuality(inner=DataSizeMechanism(), min_score=0.0)
    result = mech.run(outcome(info("a", 1, score=0.5), info("b", 3, score=-0.5), info("c", 1)))
    assert dict(result.amounts) == {"a": 100, "b": 0, "c": 0}
    assert result.mechanism == "min_quality(data_size)"
    market = FakeMarket()
    mech.settle(result, market)
    assert market.calls == [("reward", (3, {"a": 100}, "min_quality(data_size)"))]


def test_create_mechanism_and_registry() -> None:
    assert MECHANISMS.names() == [
        "data_size",
        "equal",
        "reputation",
        "royalties",
        "score",
        "stake_slash",
    ]
    with pytest.raises(ValueError, match="valid names: data_size, equal, reputation"):
        create_mechanism("shapley_pay")
    with pytest.raises(TypeError):
        create_mechanism("equal", bogus=1)
    mech = create_mechanism("data_size", min_score=0.0, max_share=0.6)
    assert isinstance(mech, Capped) and mech.label == "capped(min_quality(data_size))"
    result = mech.run(
        outcome(info("a", 9, score=1.0), info("b", 1, score=1.0), info("c", 5, score=-1))
    )
    assert dict(result.amounts) == {"a": 60, "b": 40, "c": 0}


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        outcome(info("a"), info("a"))
    with pytest.raises(ValueError, match="emission"):
        outcome(info("a"), emission=-1)
    with pytest.raises(ValueError, match="num_examples"):
        info("a", -1)
    with pytest.raises(ValueError, match=">= 0"):
        largest_remainder(10, {"a": -1.0})
    with pytest.raises(ValueError, match="platform_fee_bps"):
        RoyaltiesMechanism(platform_fee_bps=10_001)
    with pytest.raises(ValueError, match="max_share"):
        Capped(inner=EqualMechanism(), max_share=0.0)


accounts = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=6)


@given(
    total=st.integers(min_value=0, max_value=10**15),
    weights=st.dictionaries(
        accounts, st.floats(min_value=0, max_value=1e9, allow_nan=False), min_size=1, max_size=12
    ),
)
def test_largest_remainder_sums_exactly(total: int, weights: dict[str, float]) -> None:
    shares = largest_remainder(total, weights)
    if sum(weights.values()) == 0:
        assert shares == {}
        return
    assert sum(shares.values()) == total
    weight_sum = sum(weights.values())
    for account, share in shares.items():
        assert share >= 0
        assert abs(share - total * weights[account] / weight_sum) < 1 + 1e-6 * total


contribution_lists = st.lists(
    st.builds(
        ContributionInfo,
        account=accounts,
        num_examples=st.integers(min_value=0, max_value=10_000),
        accepted=st.booleans(),
        score=st.floats(min_value=-1, max_value=1, allow_nan=False),
    ),
    max_size=10,
    unique_by=lambda c: c.account,
)


@given(
    contributions=contribution_lists,
    emission=st.integers(min_value=0, max_value=10**12),
    name=st.sampled_from(["equal", "data_size", "score", "stake_slash"]),
)
def test_every_mechanism_spends_exactly_the_emission_or_nothing(
    contributions: list[ContributionInfo], emission: int, name: str
) -> None:
    params: dict[str, Any] = {"slash_amount": 1} if name == "stake_slash" else {}
    round_outcome = RoundOutcome(round=0, emission=emission, contributions=tuple(contributions))
    result: Allocation = create_mechanism(name, **params).run(round_outcome)
    assert result.spent in (0, emission)
    if result.amounts:
        assert result.spent == emission
        assert set(result.amounts) == {c.account for c in contributions}
    for c in contributions:
        if not c.accepted:
            assert result.amounts.get(c.account, 0) == 0
