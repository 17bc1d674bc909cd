"""Rational participants: the decision rule on hand-derived numbers, and the intents
the behaviour emits after each round closes."""

from __future__ import annotations

import math

import pytest

from agents.intents import Join, Leave, SetEffort
from agents.market import EffortParams, create_market_behaviour, decide
from marketplace import TOKEN
from simulation.world.market_process import MarketViewImpl, RoundSignal, start_market_processes
from tests.market.conftest import World, rng_for


def test_without_effort_a_member_stays_while_the_reward_covers_the_cost() -> None:
    cost = lambda e: 0.8  # noqa: E731
    stay = decide(0.8, cost, present=True, rejoin_margin=0.1)
    assert stay.take_part and stay.epochs is None and stay.profit == 0.0
    assert not decide(0.5, cost, present=True, rejoin_margin=0.1).take_part
    # Rejoining needs the reward above the cost by the margin: 0.8 × 1.1 = 0.88.
    assert not decide(0.85, cost, present=False, rejoin_margin=0.1).take_part
    assert decide(0.9, cost, present=False, rejoin_margin=0.1).take_part


def test_pay_that_ignores_effort_buys_the_least_effort() -> None:
    """α = 0: r(e) = r for every e, so the cheapest effort wins. The rational scenario's
    numbers: a large owner (200 rows at 0.08 tokens per row and epoch, c(e) = 16 e)
    paid 20.4 by data size stays at 1 epoch (profit 4.4); paid 10 by an equal split
    it leaves (its best profit, at 1 epoch, is 10 − 16 = −6)."""
    effort = EffortParams(min_epochs=1, max_epochs=3)
    cost = lambda e: 0.08 * 200 * e  # noqa: E731
    d = decide(20.4, cost, present=True, rejoin_margin=0.1, effort=effort, current=3)
    assert (d.take_part, d.epochs) == (True, 1)
    assert d.profit == pytest.approx(4.4)
    d = decide(10.0, cost, present=True, rejoin_margin=0.1, effort=effort, current=3)
    assert (d.take_part, d.epochs) == (False, 1)
    assert d.profit == pytest.approx(-6.0)
    # Away, it returns only above 16 × 1.1 = 17.6.
    assert not decide(17.0, cost, present=False, rejoin_margin=0.1, effort=effort).take_part
    assert decide(18.0, cost, present=False, rejoin_margin=0.1, effort=effort).take_part


@pytest.mark.parametrize(
    ("per_epoch", "epochs", "profit"),
    [
        # r(e) = 12 √e (12 earned at 1 epoch, α = 0.5): 12, 16.971, 20.785.
        (3.0, 3, 12 * math.sqrt(3) - 9),  # profits 9, 10.971, 11.785
        (4.0, 2, 12 * math.sqrt(2) - 8),  # profits 8, 8.971, 8.785
        (5.0, 1, 7.0),  # profits 7, 6.971, 5.785
    ],
)
def test_effort_maximises_expected_reward_minus_cost(
    per_epoch: float, epochs: int, profit: float
) -> None:
    effort = EffortParams(min_epochs=1, max_epochs=3, reward_elasticity=0.5)
    d = decide(
        12.0, lambda e: per_epoch * e, present=True, rejoin_margin=0.1, effort=effort, current=1
    )
    assert d.take_part and d.epochs == epochs
    assert d.profit == pytest.approx(profit)


def test_effort_range_is_checked() -> None:
    with pytest.raises(ValueError, match="max_epochs"):
        create_market_behaviour(
            "rational_participants", {"count": 1, "effort": {"min_epochs": 3, "max_epochs": 2}}
        )


def test_members_choose_effort_after_each_round_closes(world: World) -> None:
    """At start every member sets its most effort; when the round closes, the one whose
    pay (2 tokens) covers 1 epoch (1.5) drops to 1 epoch, the one paid 1 leaves."""
    world.add_clients("client-000", "client-001")
    pays = {"client-000": 2 * TOKEN, "client-001": TOKEN}
    signal = RoundSignal(world.env)
    view = MarketViewImpl(
        world.market,
        lambda: float(world.env.now),
        expected_cost_fn=lambda acct, epochs=2: 1.5 * epochs,
        round_signal=signal,
    )
    b = create_market_behaviour(
        "rational_participants",
        {"count": 2, "effort": {"min_epochs": 1, "max_epochs": 2}},
    )
    start_market_processes(
        world.env, world.market, [b], rng_for(1), applier=world.applier, view=view
    )
    world.env.run(until=1.0)
    assert [o.intent for o in world.outcomes] == [
        SetEffort("client-000", 2),
        SetEffort("client-001", 2),
    ]
    for acct in pays:
        world.market.record_contribution(
            round=1, client=acct, update_hash="0" * 64, num_examples=10, epsilon=None, metrics={}
        )
    world.market.reward(round=1, allocations=pays, mechanism="test")
    assert signal.fire()  # the members wait on it: firing wakes them
    world.env.run(until=2.0)
    assert [o.intent for o in world.outcomes[2:]] == [
        SetEffort("client-000", 1),
        Leave("client-001"),
    ]
    assert {e.kind for e in world.market.entries()} >= {"effort_set", "participant_left"}
    assert Join not in {type(o.intent) for o in world.outcomes}
