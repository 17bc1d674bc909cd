"""The intent applier, the market view, and run-to-run determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import simpy

from agents.intents import Bid, BuyLicense, Contribute, Join, Leave, Stake, Unstake, UseLicense
from agents.market import (
    BASE_UNITS_PER_TOKEN,
    LicenseInfo,
    MarketView,
    ReportUsage,
    UseLicenseKey,
    base_identity,
    create_market_behaviour,
    fresh_identity,
)
from marketplace import TOKEN, Market, PriceTerms
from simulation.world.market_process import (
    IntentApplier,
    IntentOutcome,
    MarketCounters,
    MarketViewImpl,
    start_market_processes,
)
from tests.keyring import KEYRING
from tests.market.conftest import World, rng_for

HOUR = 3600.0


def test_token_unit_mirrors_marketplace() -> None:
    assert BASE_UNITS_PER_TOKEN == TOKEN


def test_identity_helpers() -> None:
    assert fresh_identity("client-003", 2) == "client-003.2"
    assert fresh_identity("client-003.1", 2) == "client-003.2"
    assert base_identity("client-003.2") == "client-003"


def test_intents_validate() -> None:
    with pytest.raises(ValueError, match="exceeds actual"):
        ReportUsage("b", "lic-000001", reported=3, actual=2)
    with pytest.raises(ValueError, match="uses"):
        UseLicenseKey("b", "lic-000001", uses=0)


def test_view_implements_protocol(world: World) -> None:
    world.add_clients("client-000", "client-001")
    v = world.add_version(0.75, {"client-000": 0.25, "client-001": 0.75})
    assert isinstance(world.view, MarketView)
    (info,) = world.view.versions()
    assert (info.version, info.round, info.accuracy, info.rating) == (v, 1, 0.75, None)
    assert info.contributors == ("client-000", "client-001")
    assert info.prices["per_use"].max_uses == 100
    world.applier.apply(BuyLicense("buyer-000", v, "perpetual"))
    world.market.vote("client-000", v, 4.0)
    assert world.view.versions()[0].rating == 4.0
    (lic,) = world.view.licenses_of("buyer-000")
    assert lic == LicenseInfo("lic-000001", "buyer-000", v, "perpetual", 0.0, None, None, 0)
    assert lic.usable(1e9)
    assert world.view.licenses_of("nobody") == []
    assert world.view.balance("buyer-000") == 80 * TOKEN
    assert world.view.slashes("client-000") == 0
    assert world.view.expected_reward("client-000") == 0.0


def test_refusals_never_raise_and_are_recorded(world: World) -> None:
    world.add_clients("client-000")
    v = world.add_version(0.9, {"client-000": 1.0}, {"perpetual": PriceTerms(500 * TOKEN)})
    apply = world.applier.apply
    poor = apply(BuyLicense("buyer-000", v, "perpetual"))
    assert not poor.accepted and "needs" in (poor.reason or "")
    assert not apply(BuyLicense("buyer-000", "v0099", "perpetual")).accepted
    assert not apply(BuyLicense("buyer-000", v, "subscription")).accepted
    assert not apply(Leave("ghost")).accepted
    assert not apply(Stake("client-000", 50 * TOKEN)).accepted
    assert not apply(Unstake("client-000", TOKEN)).accepted
    assert not apply(Bid("buyer-000", v, "perpetual", TOKEN)).accepted
    assert not apply(Contribute("client-000", 1, 10)).accepted
    assert not apply(UseLicenseKey("buyer-000", "lic-000404")).accepted
    assert apply(Stake("client-000", TOKEN)).accepted
    assert apply(Unstake("client-000", TOKEN)).accepted
    c = world.applier.counters
    assert c.refused == 9 and c.intents == 11
    assert c.refused_by_kind["BuyLicense"] == 3
    assert c.shared_key_uses_refused == 0 and c.uses_refused == 1
    refusals = [e for e in world.market.entries() if e.kind == "intent_refused"]
    assert len(refusals) == 9
    assert refusals[0].data == {
        "intent": "BuyLicense",
        "buyer": "buyer-000",
        "version": v,
        "license_type": "perpetual",
        "source": "",
        "reason": poor.reason,
    }


def test_join_registers_and_leave_marks_departed(world: World) -> None:
    apply = world.applier.apply
    assert apply(Join("client-007", "data_owner")).accepted
    assert world.market.state.accounts["client-007"].role == "data_owner"
    assert apply(Leave("client-007")).accepted
    assert world.applier.departed == {"client-007"}
    assert apply(Join("client-007", "data_owner")).accepted  # rejoin: no re-registration
    assert world.applier.departed == set()
    assert (world.applier.counters.joins, world.applier.counters.leaves) == (2, 1)


def test_counters_as_dict() -> None:
    c = MarketCounters(licenses_sold=3, revenue=3 * TOKEN, fraud_loss=TOKEN // 2)
    c.licenses_by_type["perpetual"] = 3
    d = c.as_dict()
    assert d["licenses_sold"] == 3 and d["revenue_tokens"] == 3.0
    assert d["fraud_tokens"] == 0.5 and d["licenses_sold_perpetual"] == 3


def test_use_license_picks_a_valid_license(world: World) -> None:
    world.add_clients("client-000")
    v = world.add_version(0.9, {"client-000": 1.0}, {"per_use": PriceTerms(TOKEN, max_uses=1)})
    apply = world.applier.apply
    apply(BuyLicense("buyer-000", v, "per_use"))
    apply(BuyLicense("buyer-000", v, "per_use"))
    assert apply(UseLicense("buyer-000", v)).result == "lic-000002"
    assert apply(UseLicense("buyer-000", v)).result == "lic-000001"
    assert not apply(UseLicense("buyer-000", v)).accepted


def _run(
    path: Path, seed: int
) -> tuple[list[tuple[float, str, object, bool]], str, dict[str, float]]:
    env = simpy.Environment()
    market = Market.create(
        path, keyring=KEYRING, seed=1, genesis={"scenario_hash": "x"}, clock=lambda: env.now
    )
    with market:
        for acct in ("client-000", "client-001", "client-002"):
            market.register_participant(acct, role="data_owner")
            market.mint(acct, 10 * TOKEN, reason="initial_grant")
            market.stake(acct, 5 * TOKEN)
        for i, acc in enumerate((0.6, 0.8)):
            market.register_model_version(
                round=i + 1,
                parent=None,
                artifact_sha256=f"{i:064x}",
                metrics={"accuracy": acc},
                contributors={f"client-00{i}": 1.0},
                prices={
                    "perpetual": PriceTerms(5 * TOKEN),
                    "subscription": PriceTerms(TOKEN, duration=HOUR),
                    "per_use": PriceTerms(2 * TOKEN, max_uses=20),
                },
            )
        outcomes: list[IntentOutcome] = []
        behaviours = {
            "buyers": create_market_behaviour("buyers", {"rate_per_hour": 3.0}),
            "honest": create_market_behaviour("honest_voters", {"count": 3}),
            "cabal": create_market_behaviour("colluding_cabal", {"accounts": ["client-000"]}),
            "abusers": create_market_behaviour("license_abusers", {"count": 1}),
            "churn": create_market_behaviour(
                "churn", {"accounts": ["client-002"], "mean_online_hours": 1.0}
            ),
            "ww": create_market_behaviour("whitewashers", {"accounts": ["client-001"]}),
        }
        applier = start_market_processes(
            env, market, behaviours, rng_for(seed), on_event=outcomes.append
        )

        def slasher():
            yield env.timeout(2 * HOUR)
            market.slash("client-001", TOKEN, reason="test")

        env.process(slasher())
        env.run(until=6 * HOUR)
        seq = [(o.time, o.source, o.intent, o.accepted) for o in outcomes]
        return seq, market.head_hash, applier.counters.as_dict()


def test_same_seed_same_intents_and_ledger(tmp_path: Path) -> None:
    a = _run(tmp_path / "a" / "ledger.db", seed=3)
    b = _run(tmp_path / "b" / "ledger.db", seed=3)
    c = _run(tmp_path / "c" / "ledger.db", seed=4)
    assert a == b
    assert a[0] != c[0]
    seq, _, counters = a
    sources = {s for _, s, _, _ in seq}
    assert sources == {"buyers", "honest", "cabal", "abusers", "churn", "ww"}
    assert counters["licenses_sold"] > 0 and counters["fraud_tokens"] > 0


def test_sequence_of_behaviours_gets_unique_keys(world: World) -> None:
    keys: list[str] = []

    def rng(key: str) -> np.random.Generator:
        keys.append(key)
        return np.random.default_rng(0)

    b = create_market_behaviour("churn", {"count": 1})
    applier = start_market_processes(world.env, world.market, [b, b], rng)
    assert keys == ["churn", "churn#2"]
    assert isinstance(applier, IntentApplier)
    assert isinstance(MarketViewImpl(world.market, lambda: 0.0), MarketView)


def test_view_rating_rule_and_cache(world: World) -> None:
    world.add_clients("client-000", "client-001", stake=TOKEN)
    v = world.add_version(0.5, {"client-000": 1.0})
    yuma = MarketViewImpl(world.market, lambda: float(world.env.now), rating_rule="yuma")
    world.market.vote("client-000", v, 5.0)
    assert yuma.versions()[0].rating == world.market.rating(v, rule="yuma") == 5.0
    world.market.vote("client-001", v, 1.0)
    assert yuma.versions()[0].rating == world.market.rating(v, rule="yuma")
    assert world.view.versions()[0].rating == 3.0
