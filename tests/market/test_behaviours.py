"""Each market behaviour on a small simpy world with a real ``Market``."""

from __future__ import annotations

import math
from collections import Counter
from statistics import mean

import numpy as np
import pytest

from agents.intents import BuyLicense, Join, Leave, UseLicense, Vote
from agents.market import (
    MARKET_BEHAVIOURS,
    Availability,
    BuyersBehaviour,
    LicenseTerms,
    ReportUsage,
    UseLicenseKey,
    VersionInfo,
    create_market_behaviour,
    fresh_identity,
)
from marketplace import TOKEN, PriceTerms
from tests.market.conftest import World

HOUR = 3600.0
CHEAP = {
    "perpetual": PriceTerms(price=1 * TOKEN),
    "subscription": PriceTerms(price=1 * TOKEN, duration=2 * HOUR),
    "per_use": PriceTerms(price=1 * TOKEN, max_uses=50),
}


def intents_of(world: World, kind: type) -> list:
    return [o.intent for o in world.outcomes if isinstance(o.intent, kind)]


# -- registry ------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert MARKET_BEHAVIOURS.names() == (
        "buyers",
        "churn",
        "colluding_cabal",
        "honest_voters",
        "license_abusers",
        "rational_participants",
        "whitewashers",
    )


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="valid names: buyers, churn"):
        create_market_behaviour("buyer")


def test_bad_params_name_the_field() -> None:
    with pytest.raises(ValueError, match="rate_per_hour"):
        create_market_behaviour("buyers", {"rate_per_hour": -1})
    with pytest.raises(ValueError, match="Extra inputs"):
        create_market_behaviour("honest_voters", {"noise": 1})
    with pytest.raises(ValueError, match="one of accounts, count or group"):
        create_market_behaviour("colluding_cabal", {"accounts": ["a"], "count": 2})


# -- buyers --------------------------------------------------------------------------------


def test_buyer_value_is_hand_computed() -> None:
    b = BuyersBehaviour({"base_value": {"perpetual": 10.0}, "license_mix": {"perpetual": 1.0}})
    v = VersionInfo("v0001", 1, 0.8, 4.0, {"perpetual": LicenseTerms(5 * TOKEN)}, (), 0.0)
    # 10 · 0.8² · (4/5)¹ = 5.12 tokens
    assert b.value(v, "perpetual") == pytest.approx(5.12)
    assert b.choose([v], "perpetual") == "v0001"
    pricey = VersionInfo("v0002", 1, 0.8, 4.0, {"perpetual": LicenseTerms(6 * TOKEN)}, (), 0.0)
    assert b.choose([pricey], "perpetual") is None
    unrated = VersionInfo("v0003", 1, 0.8, None, {}, (), 0.0)
    assert b.value(unrated, "perpetual") == pytest.approx(10 * 0.64 * 0.6)  # prior 3.0


@pytest.mark.parametrize("use_rate", [2.0, 0.0])
def test_buyers_arrive_at_poisson_rate(world: World, use_rate: float) -> None:
    world.add_clients("client-000")
    world.add_version(0.9, {"client-000": 1.0}, CHEAP)
    rate, hours = 5.0, 10.0
    params = {"rate_per_hour": rate, "renew_prob": 0.0, "use_rate_per_hour": use_rate}
    world.start({"buyers": create_market_behaviour("buyers", params)})
    world.env.run(until=hours * HOUR)
    buys = intents_of(world, BuyLicense)
    # golden for seed 7; usage draws come from per-buyer child streams, so the arrival
    # count does not depend on the use rate
    assert len(buys) == 43
    assert abs(len(buys) - rate * hours) < 3 * math.sqrt(rate * hours)
    assert len({b.buyer for b in buys}) == len(buys)  # one purchase per buyer, no renewals
    c = world.applier.counters
    assert c.licenses_sold == len(buys) == c.buyers_registered
    assert c.revenue == len(buys) * TOKEN
    assert world.market.balance("pool:v0001") == c.revenue
    assert not world.refused()
    # every buyer was funded once and paid its price
    assert world.market.balance("buyer-000") == 100 * TOKEN - TOKEN
    assert c.uses_metered == len(intents_of(world, UseLicense))
    assert (c.uses_metered > 0) == (use_rate > 0)


def test_buyers_prefer_quality_and_rating(world: World) -> None:
    world.add_clients("client-000", "client-001")
    poor = world.add_version(0.5, {"client-000": 1.0}, CHEAP)
    good = world.add_version(0.9, {"client-001": 1.0}, CHEAP)
    params = {"rate_per_hour": 10.0, "license_mix": {"perpetual": 1.0}, "renew_prob": 0.0}
    world.start({"buyers": create_market_behaviour("buyers", params)})
    world.env.run(until=3 * HOUR)
    bought = Counter(b.version for b in intents_of(world, BuyLicense))
    assert bought[good] > 0 and bought[poor] == 0


def test_subscriptions_renew_and_expire(world: World) -> None:
    world.add_clients("client-000")
    world.add_version(0.9, {"client-000": 1.0}, CHEAP)
    params = {
        "rate_per_hour": 1.0,
        "max_buyers": 3,
        "license_mix": {"subscription": 1.0},
        "renew_prob": 1.0,
        "mean_session_hours": 1000.0,
    }
    world.start({"buyers": create_market_behaviour("buyers", params)})
    world.env.run(until=12 * HOUR)
    buys = intents_of(world, BuyLicense)
    assert len({b.buyer for b in buys}) == 3
    assert len(buys) > 3  # renewals after the 2-hour subscriptions expire
    assert not world.refused()  # buyers never use an expired subscription


# -- voting --------------------------------------------------------------------------------


def _ratings(world: World) -> dict[str, float]:
    return {v.version: v.rating for v in world.view.versions() if v.rating is not None}


def test_honest_voters_track_quality(world: World) -> None:
    world.add_clients("client-000", "client-001")
    lo = world.add_version(0.4, {"client-000": 1.0})
    hi = world.add_version(0.9, {"client-001": 1.0})
    world.start(
        {"honest": create_market_behaviour("honest_voters", {"count": 20, "noise_sd": 0.3})}
    )
    world.env.run(until=HOUR)
    r = _ratings(world)
    assert r[lo] == pytest.approx(2.0, abs=0.25)
    assert r[hi] == pytest.approx(4.5, abs=0.25)
    votes = intents_of(world, Vote)
    assert len(votes) == 40 and all(0.0 <= v.rating <= 5.0 for v in votes)
    assert world.applier.counters.votes_cast == 40


def test_cabal_stuffs_own_and_bad_mouths_others(world: World) -> None:
    world.add_clients("client-000", "client-001", "client-002")
    own = world.add_version(0.5, {"client-000": 0.5, "client-001": 0.5})
    other = world.add_version(0.8, {"client-002": 1.0})
    honest = create_market_behaviour("honest_voters", {"count": 6, "noise_sd": 0.2})
    cabal = create_market_behaviour("colluding_cabal", {"accounts": ["client-000", "client-001"]})
    world.start({"honest": honest, "cabal": cabal})
    world.env.run(until=HOUR)
    r = _ratings(world)
    honest_votes = {
        v.version: mean(
            x.rating
            for x in intents_of(world, Vote)
            if x.voter.startswith("voter-") and x.version == v.version
        )
        for v in world.view.versions()
    }
    assert r[own] > honest_votes[own] + 0.5
    assert r[other] < honest_votes[other] - 0.5
    cabal_votes = {
        (v.voter, v.version): v.rating
        for v in intents_of(world, Vote)
        if v.voter.startswith("client-")
    }
    assert cabal_votes == {
        ("client-000", own): 5.0,
        ("client-001", own): 5.0,
        ("client-000", other): 0.0,
        ("client-001", other): 0.0,
    }


def test_cabal_own_versions_are_those_it_holds_own_share_of(world: World) -> None:
    """Under full participation every version has a member among its contributors; the
    cabal owns a version only when its members hold ``own_share`` of it, so it both
    stuffs and bad-mouths (it used to rate every version its own)."""
    world.add_clients(*(f"client-{i:03d}" for i in range(4)))
    equal = {f"client-{i:03d}": 0.25 for i in range(4)}  # members hold 0.5
    skewed = {"client-000": 0.1, "client-001": 0.1, "client-002": 0.4, "client-003": 0.4}
    own = world.add_version(0.5, equal)
    other = world.add_version(0.8, skewed)  # members hold 0.2
    cabal = create_market_behaviour(
        "colluding_cabal", {"accounts": ["client-000", "client-001"], "own_share": 0.5}
    )
    world.start({"cabal": cabal})
    world.env.run(until=HOUR)
    votes = {(v.voter, v.version): v.rating for v in intents_of(world, Vote)}
    assert votes == {
        ("client-000", own): 5.0,
        ("client-001", own): 5.0,
        ("client-000", other): 0.0,
        ("client-001", other): 0.0,
    }


def test_duplicate_and_out_of_range_votes_are_refused_not_raised(world: World) -> None:
    world.add_clients("client-000")
    v = world.add_version(0.5, {"client-000": 1.0})
    assert world.applier.apply(Vote("client-000", v, 4.0)).accepted
    dup = world.applier.apply(Vote("client-000", v, 3.0))
    bad = world.applier.apply(Vote("client-000", v, 7.0))
    assert not dup.accepted and "already voted" in (dup.reason or "")
    assert not bad.accepted and "score must be in [0, 5]" in (bad.reason or "")
    assert world.applier.counters.votes_refused == 2
    refusals = [e for e in world.market.entries() if e.kind == "intent_refused"]
    assert [e.data["intent"] for e in refusals] == ["Vote", "Vote"]


# -- whitewashers --------------------------------------------------------------------------


def test_whitewasher_rejoins_under_fresh_id_after_slash(world: World) -> None:
    world.add_clients("client-000", "client-001", stake=5 * TOKEN)

    def slasher():
        yield world.env.timeout(1000.0)
        world.market.slash("client-000", TOKEN, reason="poisoning")

    world.env.process(slasher())
    ww = create_market_behaviour(
        "whitewashers", {"accounts": ["client-000", "client-001"], "check_interval_s": 600.0}
    )
    world.start({"ww": ww})
    world.env.run(until=5 * HOUR)
    membership = [(o.time, o.intent) for o in world.outcomes if isinstance(o.intent, Leave | Join)]
    assert membership == [
        (1200.0, Leave("client-000")),
        (1200.0, Join("client-000.1", "data_owner")),
    ]
    assert fresh_identity("client-000", 1) == "client-000.1"
    assert world.market.state.accounts["client-000.1"].role == "data_owner"
    assert world.view.slashes("client-000") == 1 and world.view.slashes("client-000.1") == 0
    assert world.applier.departed == {"client-000"}
    kinds = [e.kind for e in world.market.entries() if e.kind.startswith("participant_")]
    assert kinds == ["participant_left", "participant_joined"]


# -- license abusers -----------------------------------------------------------------------


def test_key_sharing_uses_are_refused_and_recorded(world: World) -> None:
    world.add_clients("client-000")
    world.add_version(0.9, {"client-000": 1.0})
    params = {
        "count": 1,
        "license_type": "perpetual",
        "sharers": 3,
        "shared_use_rate_per_hour": 2.0,
        "true_use_rate_per_hour": 0.0,
    }
    world.start({"abusers": create_market_behaviour("license_abusers", params)})
    world.env.run(until=4 * HOUR)
    shared = [o for o in world.outcomes if isinstance(o.intent, UseLicenseKey)]
    assert len(shared) == 26  # golden for seed 7
    assert {o.intent.user for o in shared} == {f"abuser-000.share{j}" for j in range(3)}
    assert all(not o.accepted and "belongs to abuser-000" in (o.reason or "") for o in shared)
    c = world.applier.counters
    assert c.shared_key_uses_refused == c.uses_refused == len(shared)
    assert world.market.license("lic-000001").uses == 0
    assert world.market.balance("abuser-000.share0") == 0  # sharers are not funded
    recorded = [e for e in world.market.entries() if e.kind == "intent_refused"]
    assert len(recorded) == len(shared)
    assert recorded[0].data["license_id"] == "lic-000001"


def test_under_reporting_fraud_is_actual_minus_reported_times_unit_price(world: World) -> None:
    world.add_clients("client-000")
    v = world.add_version(0.9, {"client-000": 1.0})
    params = {
        "count": 2,
        "sharers": 0,
        "true_use_rate_per_hour": 6.0,
        "report_fraction": 0.25,
        "report_interval_s": HOUR,
    }
    world.start({"abusers": create_market_behaviour("license_abusers", params)})
    world.env.run(until=5 * HOUR + 1)
    reports = intents_of(world, ReportUsage)
    assert len(reports) == 10
    actual = sum(r.actual for r in reports)
    reported = sum(r.reported for r in reports)
    unit = world.applier.unit_price(v)
    assert unit == 10 * TOKEN // 100
    c = world.applier.counters
    assert (c.actual_uses, c.reported_uses) == (actual, reported)
    assert c.fraud_loss == (actual - reported) * unit > 0
    assert c.as_dict()["fraud_tokens"] == pytest.approx((actual - reported) * 0.1)
    metered = sum(world.market.license(i).uses for i in ("lic-000001", "lic-000002"))
    assert metered == reported  # the ledger only ever sees the reported usage


def test_fraud_is_counted_for_every_use_beyond_the_cap_too(world: World) -> None:
    """A report past the licence's remaining uses meters what is allowed; every actual use
    not paid for is fraud. (The whole report used to be refused: uses went uncounted.)"""
    world.add_clients("client-000")
    prices = {"per_use": PriceTerms(price=10 * TOKEN, max_uses=5)}  # 2 tokens per use
    v = world.add_version(0.9, {"client-000": 1.0}, prices)
    apply = world.applier.apply
    lic = apply(BuyLicense("buyer-000", v, "per_use")).result
    assert apply(ReportUsage("buyer-000", lic, reported=3, actual=6)).accepted
    # 2 of the 5 uses remain: 2 metered, 1 reported use refused, 8 actual uses unpaid.
    assert apply(ReportUsage("buyer-000", lic, reported=3, actual=8)).accepted
    c = world.applier.counters
    assert (c.reported_uses, c.actual_uses, c.uses_metered, c.uses_refused) == (6, 14, 5, 1)
    assert c.fraud_loss == ((6 - 3) + (8 - 2)) * 2 * TOKEN
    assert world.market.license(lic).uses == 5


def test_expired_and_exhausted_licenses_are_refused(world: World) -> None:
    world.add_clients("client-000")
    prices = {
        "subscription": PriceTerms(price=TOKEN, duration=HOUR),
        "per_use": PriceTerms(price=TOKEN, max_uses=2),
    }
    v = world.add_version(0.9, {"client-000": 1.0}, prices)
    apply = world.applier.apply
    sub = apply(BuyLicense("buyer-000", v, "subscription"))
    assert sub.accepted and sub.result == "lic-000001"
    assert apply(UseLicense("buyer-000", v)).accepted
    world.env.run(until=HOUR)
    late = apply(UseLicense("buyer-000", v))
    assert not late.accepted and "expired" in (late.reason or "")
    assert apply(BuyLicense("buyer-001", v, "per_use")).accepted
    assert apply(UseLicense("buyer-001", v, 2)).accepted
    over = apply(UseLicense("buyer-001", v))
    assert not over.accepted and "exhausted" in (over.reason or "")
    none = apply(UseLicense("buyer-002", v))
    assert not none.accepted and "holds no license" in (none.reason or "")
    assert world.applier.counters.uses_refused == 3


# -- rational participants and churn -------------------------------------------------------


def _pay_rounds(world: World, rewards: dict[str, int], rounds: int) -> None:
    for rnd in range(1, rounds + 1):
        for acct in rewards:
            world.market.record_contribution(
                round=rnd,
                client=acct,
                update_hash=f"{rnd:064x}",
                num_examples=10,
                epsilon=None,
                metrics={},
            )
        world.market.reward(round=rnd, allocations=rewards, mechanism="test")


def test_rational_participant_leaves_when_cost_exceeds_reward(world: World) -> None:
    world.add_clients("client-000", "client-001")
    _pay_rounds(world, {"client-000": TOKEN // 2, "client-001": 2 * TOKEN}, rounds=3)
    assert world.view.expected_reward("client-000") == pytest.approx(0.5)
    assert world.view.expected_reward("newcomer") == pytest.approx(1.25)
    params = {"accounts": ["client-000", "client-001"], "round_interval_s": 600.0}
    # The run's cost model says a round costs 0.8 tokens (compute 0.6 + 1 ε at 0.2).
    world.view._expected_cost_fn = lambda acct: 0.6 + 1.0 * 0.2
    world.start({"rational": create_market_behaviour("rational_participants", params)})
    world.env.run(until=3000.0)
    membership = [(o.time, o.intent) for o in world.outcomes]
    assert membership == [(600.0, Leave("client-000"))]
    assert world.applier.departed == {"client-000"}


def test_rational_participant_rejoins_above_margin(world: World) -> None:
    from simulation.world.market_process import MarketViewImpl, start_market_processes
    from tests.market.conftest import rng_for

    world.add_clients("client-000")
    schedule = {0: 1.0, 1: 0.5, 2: 1.05, 3: 1.2, 4: 1.2}
    view = MarketViewImpl(
        world.market,
        lambda: float(world.env.now),
        expected_reward_fn=lambda acct: schedule[int(world.env.now // 600) - 1],
        expected_cost_fn=lambda acct: 1.0,
    )
    b = create_market_behaviour(
        "rational_participants",
        {"accounts": ["client-000"], "rejoin_margin": 0.1, "round_interval_s": 600.0},
    )
    start_market_processes(
        world.env, world.market, [b], rng_for(1), applier=world.applier, view=view
    )
    world.env.run(until=3001.0)
    assert [(o.time, o.intent) for o in world.outcomes] == [
        (1200.0, Leave("client-000")),
        (2400.0, Join("client-000", "data_owner")),
    ]


def test_churn_alternates_sessions_and_exposes_availability(world: World) -> None:
    world.add_clients("client-000", "client-001")
    churn = create_market_behaviour(
        "churn",
        {
            "count": 2,
            "mean_online_hours": 1.0,
            "mean_offline_hours": 0.5,
            "dropout_prob": 0.2,
            "straggler_prob": 0.5,
            "straggler_slowdown": 4.0,
        },
    )
    world.start({"churn": churn})
    world.env.run(until=10 * HOUR)
    for acct in ("client-000", "client-001"):
        seq = [type(o.intent) for o in world.outcomes if o.intent.account == acct]  # type: ignore[union-attr]
        assert len(seq) > 4
        assert seq[::2] == [Leave] * len(seq[::2]) and seq[1::2] == [Join] * len(seq[1::2])
    assert not world.refused()
    avail = churn.availability
    assert avail == Availability(0.5, 4.0, 0.2)
    draws = [avail.sample(np.random.default_rng(i)) for i in range(2000)]
    assert mean(d for d, _ in draws) == pytest.approx(0.2, abs=0.03)
    assert {s for _, s in draws} == {1.0, 4.0}
