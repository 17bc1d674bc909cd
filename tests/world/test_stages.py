"""Each stage of a round alone, on hand-built inputs, against hand-derived values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from marketplace import TOKEN
from marketplace.contribution import create_evaluator
from marketplace.incentives import create_mechanism
from marketplace.state import PriceTerms
from simulation import names
from simulation.config.prices import FixedPricing, pricing_for
from simulation.config.schema import (
    ClientsConfig,
    ContributionConfig,
    DPSGDPrivacy,
    MarketConfig,
    TimingConfig,
    TrainingConfig,
)
from simulation.fl.aggregation import create_strategy
from simulation.fl.evaluation import Footprint, SplitMetrics
from simulation.fl.messages import ReplyMetrics
from simulation.fl.privacy import epsilon
from simulation.rng import SeedTree
from simulation.world.accounting import ClientPrivacy
from simulation.world.context import Recorder, RoundContext, Screened
from simulation.world.records import Reply
from simulation.world.stages import (
    AccountPrivacy,
    AdvanceClock,
    Aggregate,
    AttackMetrics,
    ChargeCosts,
    CloseRound,
    Dispatch,
    EvaluateModel,
    RecordContributions,
    RegisterVersion,
    Reward,
    SampleClients,
    ScoreContributions,
    Screen,
    Stage,
    StopExhausted,
)
from simulation.world.timing import TimeModel
from tests.world.fakes import FakeMarket, FakePopulation, federation

W = {"w": np.zeros(2, np.float32)}


def ctx(round_: int = 1) -> RoundContext:
    return RoundContext(round=round_, start=0.0, wall_start=0.0)


def reply(c: int, w: float | None, n: int = 10, **kw: Any) -> Reply:
    """A reply of client ``c`` with weights ``w`` everywhere (it trained: ``steps`` 1)."""
    weights = None if w is None else {"w": np.full(2, w, np.float32)}
    kw.setdefault("steps", 1)
    metrics = ReplyMetrics(num_examples=n, **kw)
    return Reply(c, weights, metrics if w is not None else None, kw.pop("error", None))


def test_every_stage_has_a_name_and_satisfies_the_protocol() -> None:
    from simulation.world import stages

    classes = [getattr(stages, n) for n in stages.__all__ if n[0].isupper()]
    classes = [c for c in classes if c not in (stages.Stage,) and isinstance(c, type)]
    assert len({c.name for c in classes}) == len(classes) >= 15


# ------------------------------------------------------------------ participation


def test_sample_draws_the_fraction_of_eligible_clients_and_announces_the_round() -> None:
    fed = federation(10)
    fed.departed.add(9)
    pop = FakePopulation(fed.identities, absent={8}, drop={0, 1, 2, 3, 4, 5, 6, 7})
    market = FakeMarket()
    stage = SampleClients(ClientsConfig(count=10, fraction=0.5), SeedTree(3), pop, fed, market, 10)  # type: ignore[arg-type]
    c = ctx()
    stage.run(c)
    # 8 eligible (8 absent, 9 departed): round(0.5 * 8) = 4 sampled, sorted, distinct.
    assert len(c.sampled) == 4 and c.sampled == sorted(set(c.sampled))
    assert set(c.sampled) <= set(range(8))
    assert c.dropped == c.sampled and c.asked == []
    ((_, call),) = [x for x in market.calls if x[0] == "record"]
    assert call["kind"] == "round_started"
    assert call["data"]["sampled"] == [f"client-{i:03d}" for i in c.sampled]


def test_sample_honours_min_per_round() -> None:
    fed = federation(10)
    pop = FakePopulation(fed.identities)
    stage = SampleClients(
        ClientsConfig(count=10, fraction=0.1, min_per_round=3),
        SeedTree(0),
        pop,
        fed,
        FakeMarket(),
        10,
    )  # type: ignore[arg-type]
    c = ctx()
    stage.run(c)
    assert len(c.sampled) == 3


def test_stop_exhausted_stops_a_client_whose_next_round_exceeds_the_budget() -> None:
    step = (1.0, 0.1, 10)  # σ, q = B/n = 10/100, ⌈n/B⌉ = 10 steps per epoch
    one, eleven = epsilon((step,), 1e-5), epsilon((step,) * 11, 1e-5)
    dp = DPSGDPrivacy(noise_multiplier=1.0, budget=(one + eleven) / 2)
    privacy = ClientPrivacy(dp, TrainingConfig(batch_size=10), 5, lambda c, *_: 100)
    fed = federation(2)
    # Client 0 has trained 10 rounds: an 11th exceeds the budget; client 1's first fits.
    assert privacy.planned_step(0, 1) == step
    for _ in range(10):
        privacy.record("client-000", step)
    market = FakeMarket()
    StopExhausted(privacy, FakePopulation(fed.identities), fed, market, 1).run(ctx())  # type: ignore[arg-type]
    assert fed.active == {1} and fed.stopped == {0}
    ((_, call),) = market.calls
    assert call["kind"] == "privacy_budget_exhausted"
    assert call["data"]["epsilon_next"] == pytest.approx(epsilon((step,) * 11, 1e-5))
    assert call["data"]["budget_of"] == "data_owner"  # on every stop, Sybil or not


# ------------------------------------------------------------------ dispatch


def test_dispatch_sends_only_asked_clients_and_sorts_replies() -> None:
    fed = federation(4)
    sent: list[list[int]] = []

    class Tasks:
        def build(self, round_: int, clients: list[int], fed: Any, now: float) -> list[int]:
            return list(clients)

    def transport(tasks: list[int], weights: Any) -> list[Reply]:
        sent.append(tasks)
        return [reply(c, 1.0) for c in reversed(tasks)]

    c = ctx()
    c.sampled, c.dropped = [0, 1, 3], [1]
    Dispatch(Tasks(), transport, fed).run(c)  # type: ignore[arg-type]
    assert sent == [[0, 3]]
    assert [r.client for r in c.replies] == [0, 3]


# ------------------------------------------------------------------ screening


def _time_model() -> TimeModel:
    cfg = TimingConfig(bandwidth_mbps=8.0, latency_s=0.5, server_seconds=1.0, deadline_s=10.0)
    return TimeModel(
        cfg, speeds_gflops=(1.0, 1.0, 0.1, 1.0), flops_per_example=1e8, model_bytes=10**6
    )


def test_screen_times_each_reply_and_rejects_bad_updates_and_stragglers() -> None:
    fed = federation(4, W)
    pop = FakePopulation(fed.identities)
    stage = Screen(
        _time_model(), pop, fed, base_epochs=1, dp=False, max_update_norm=100.0, deadline=10.0
    )  # type: ignore[arg-type]
    c = ctx()
    bad = Reply(1, {"w": np.array([np.nan, 0], np.float32)}, ReplyMetrics(10, steps=1))
    crashed = Reply(3, None, None, error="client error: boom")
    c.screened = [
        Screened(r, fed.account(r.client)) for r in (reply(0, 1.0), bad, reply(2, 1.0), crashed)
    ]
    stage.run(c)
    # seconds = 3 · 1e8 · n / (speed · 1e9) + 2 · (1e6 · 8 / 8e6) + 2 · 0.5
    assert c.screened[0].seconds == pytest.approx(3.0 + 2.0 + 1.0)
    assert c.screened[2].seconds == pytest.approx(30.0 + 2.0 + 1.0)
    assert c.screened[0].reason is None
    assert c.screened[1].reason is not None and "finite" in c.screened[1].reason
    assert c.screened[2].reason == "straggler: 33 s > deadline 10 s"
    assert c.screened[3].reason == "client error: boom"
    assert c.stragglers == 1
    assert c.client_seconds == pytest.approx([6.0, 6.0, 10.0, 3.0])
    assert AdvanceClock(_time_model()).run(c) == pytest.approx(10.0 + 1.0)


def test_a_client_that_did_not_train_takes_network_time_only_and_pays_no_compute() -> None:
    fed, rec = federation(1, W), Recorder()
    free_rider = reply(0, 0.0, n=10, steps=0)
    stage = Screen(_time_model(), FakePopulation(fed.identities), fed, base_epochs=1, dp=False,
                   max_update_norm=100.0, deadline=None)  # type: ignore[arg-type]  # fmt: skip
    c = ctx()
    c.screened = [Screened(free_rider, "client-000")]
    stage.run(c)
    assert c.screened[0].seconds == pytest.approx(2.0 + 1.0)  # download/upload + latency
    ChargeCosts(MarketConfig(compute_cost_per_round=2.0), rec).run(c)
    assert rec.rows == [(1, "client-000", names.COST, 0.0)]


def test_account_privacy_composes_every_replys_steps_into_its_identity() -> None:
    dp = DPSGDPrivacy(noise_multiplier=1.3)
    privacy = ClientPrivacy(dp, TrainingConfig(batch_size=10), 5, lambda c, *_: 100)
    fed, rec = federation(2), Recorder()
    c = ctx()
    c.replies = [reply(0, 1.0, steps=20, sample_rate=0.1), Reply(1, None, None, "crash")]
    AccountPrivacy(privacy, fed, rec).run(c)
    first, second = c.screened
    assert first.epsilon_before == 0.0
    assert first.epsilon == pytest.approx(epsilon(((1.3, 0.1, 20),), 1e-5))
    assert second.epsilon == 0.0  # sent no steps
    assert [r.metric for r in rec.rows] == [names.EPSILON, names.EPSILON]


def test_charge_costs_prices_compute_and_the_epsilon_spent() -> None:
    rec = Recorder()
    c = ctx()
    c.screened = [Screened(reply(0, 1.0), "client-000", epsilon=1.5, epsilon_before=0.5)]
    ChargeCosts(MarketConfig(compute_cost_per_round=2.0, price_per_epsilon=3.0), rec).run(c)
    assert rec.rows == [(1, "client-000", names.COST, 2.0 + 3.0 * 1.0)]


def test_record_contributions_signs_accepted_and_rejected_in_reply_order() -> None:
    market, rec = FakeMarket(), Recorder()
    c = ctx()
    ok = reply(0, 1.0, n=7, train_loss=0.5)
    c.screened = [
        Screened(ok, "client-000", epsilon=0.2),
        Screened(reply(1, 1.0), "client-001", reason="nan"),
    ]
    RecordContributions(market, rec).run(c)  # type: ignore[arg-type]
    assert market.kinds() == ["record_contribution", "reject_contribution"]
    signed = market.calls[0][1]
    assert signed["num_examples"] == 7 and signed["epsilon"] == 0.2
    # No stand-in for the accuracy the client did not report.
    assert signed["metrics"] == {"train-loss": 0.5}
    assert market.calls[1][1]["reason"] == "nan"
    assert c.accepted == [ok] and c.rejected == ["client-001"]


# ------------------------------------------------------------------ scoring and aggregation


def test_score_gives_leave_one_out_on_the_validation_utility() -> None:
    fed, rec, market = federation(2, {"w": np.zeros(1, np.float32)}), Recorder(), FakeMarket()
    c = ctx()
    c.accepted = [Reply(0, {"w": np.array([1.0], np.float32)}, ReplyMetrics(1)),
                  Reply(1, {"w": np.array([3.0], np.float32)}, ReplyMetrics(1))]  # fmt: skip
    stage = ScoreContributions(ContributionConfig(evaluator="loo"), create_evaluator("loo"),
                               lambda flat: float(flat.sum()), SeedTree(0), fed, market, rec)  # type: ignore[arg-type]  # fmt: skip
    stage.run(c)
    # U(all) = mean(1, 3) = 2, U({0}) = 1, U({1}) = 3: LOO = U(all) - U(all \ i).
    assert c.scores == {"client-000": 2 - 3, "client-001": 2 - 1}
    qualities = [call["score"] for name, call in market.calls if name == "record_quality"]
    assert qualities == [0.0, 1.0]


def test_aggregate_is_fedavg_weighted_by_examples() -> None:
    fed, rec = federation(2, {"w": np.zeros(2, np.float32)}), Recorder()
    c = ctx()
    c.accepted = [reply(0, 1.0, n=1), reply(1, 3.0, n=3)]
    Aggregate(create_strategy("fedavg", {}), fed, rec, 0.05).run(c)
    np.testing.assert_allclose(fed.weights["w"], [2.5, 2.5])  # (1·1 + 3·3) / 4
    assert c.aggregated and fed.weights["w"].dtype == np.float32


def test_aggregate_flags_clients_a_robust_rule_weighs_below_the_threshold() -> None:
    class Rule:
        def __init__(self) -> None:
            self.last_weights = {0: 0.9, 1: 0.01}

        def aggregate_train(self, round_: int, msgs: Any) -> tuple[None, None]:
            return None, None

    fed, rec = federation(2), Recorder()
    c = ctx()
    c.accepted = [reply(0, 1.0), reply(1, 1.0)]
    before = fed.weights
    Aggregate(Rule(), fed, rec, 0.05).run(c)
    assert not c.aggregated and fed.weights is before
    assert c.failure == "the strategy returned no model"
    assert (1, "client-001", names.FLAGGED, 1.0) in rec.rows
    assert not any(r.metric == names.FLAGGED and r.client == "client-000" for r in rec.rows)


def test_aggregate_without_accepted_updates_fails_the_round() -> None:
    fed, rec = federation(2), Recorder()
    c = ctx()
    before = fed.weights
    Aggregate(create_strategy("fedavg", {}), fed, rec, 0.05).run(c)
    assert c.failure == "no accepted update" and not c.aggregated and fed.weights is before


# ------------------------------------------------------------------ registry and economy


def test_a_failed_round_registers_no_version_and_says_why_on_the_ledger() -> None:
    market, fed = FakeMarket(), federation(2)
    fed.version = "v0001"
    c = ctx(2)
    c.accepted, c.failure = [reply(0, 1.0)], "the strategy returned no model"
    RegisterVersion(market, fed, MarketConfig().prices, rule=create_mechanism("equal")).run(c)  # type: ignore[arg-type]
    assert market.calls == [
        ("record", {"kind": "aggregation_failed",
                    "data": {"round": 2, "reason": "the strategy returned no model"}})
    ]  # fmt: skip
    assert fed.version == "v0001"


def test_reward_halves_the_emission_on_the_ledgers_schedule() -> None:
    fed = federation(2)
    minted = []
    for r in (1, 2, 3, 4):
        c = ctx(r)
        c.accepted = [reply(0, 1.0), reply(1, 1.0)]
        Reward(create_mechanism("equal"), 100.0, FakeMarket(), fed, Recorder(), 2).run(c)  # type: ignore[arg-type]
        minted.append(c.issued / TOKEN)
    assert minted == [100.0, 50.0, 50.0, 25.0]  # 100 tokens >> (round // 2)


def test_a_failed_round_mints_nothing_but_still_slashes() -> None:
    market, fed, rec = FakeMarket(), federation(3), Recorder()
    c = ctx()
    c.accepted, c.rejected = [reply(0, 1.0), reply(1, 1.0)], ["client-002"]
    c.failure = "the strategy returned no model"
    mech = create_mechanism("stake_slash", slash_amount=7, base="equal")
    Reward(mech, 100.0, market, fed, rec).run(c)  # type: ignore[arg-type]
    assert c.issued == 0 and "reward" not in market.kinds()
    slash = [kw for name, kw in market.calls if name == "slash"]
    assert [(s["account"], s["amount"]) for s in slash] == [("client-002", 7)]
    assert not any(r.metric == names.REWARD_TOKENS and r.value for r in rec.rows)


def test_register_version_records_example_shares_and_prices() -> None:
    market, fed = FakeMarket(), federation(2)
    c = ctx()
    c.accepted, c.registry_metrics = [reply(0, 1.0, n=1), reply(1, 1.0, n=3)], {"accuracy": 0.5}
    RegisterVersion(
        market, fed, pricing_for(MarketConfig()), rule=create_mechanism("data_size")
    ).run(c)  # type: ignore[arg-type]
    call = market.calls[0][1]
    assert call["contributors"] == {"client-000": 0.25, "client-001": 0.75}
    assert call["metrics"] == {"accuracy": 0.5}
    assert fed.version == "v0001" and market.kinds()[1] == "set_price_list"
    # Demand prices (no market.prices): 0.8 x default buyers' worth at accuracy 0.5,
    # prior rating 3: base_value x 0.5^2 x 3/5 = 50, 10, 5 x 0.15 -> 6, 1.2, 0.6 tokens.
    assert market.calls[1][1]["prices"] == {
        "perpetual": PriceTerms(6_000_000, None, None),
        "subscription": PriceTerms(1_200_000, 86_400.0, None),
        "per_use": PriceTerms(600_000, None, 20),
    }


def test_register_version_keeps_the_hashed_bytes_when_asked() -> None:
    import hashlib

    market, fed, kept = FakeMarket(), federation(2), dict[str, bytes]()
    c = ctx()
    c.accepted = [reply(0, 1.0)]
    RegisterVersion(market, fed, FixedPricing({}), kept, rule=create_mechanism("equal")).run(c)  # type: ignore[arg-type]
    call = market.calls[0][1]
    assert list(kept) == ["v0001"]
    assert hashlib.sha256(kept["v0001"]).hexdigest() == call["artifact_sha256"]


class _SplitServer:
    """A server whose validation and test splits give different, known results."""

    footprint = Footprint(modelled_latency_ms=0.25, parameters=7, size_bytes=28)

    def __init__(self) -> None:
        self.val = SplitMetrics(0.8, 0.5, 0.7, 0.6, 0.65, 0.2, 0.1)
        self.test = SplitMetrics(0.6, 0.9, 0.5, 0.4, 0.45, 0.3, None)

    def test_results(self, weights: Any) -> SplitMetrics:
        return self.test

    def validation_results(self, weights: Any) -> SplitMetrics:
        return self.val

    def backdoor_success(self, weights: Any, population: Any) -> float:
        return float("nan")


def test_evaluate_model_registers_validation_results_and_keeps_test_apart() -> None:
    c, fed = ctx(), federation(1)
    EvaluateModel(_SplitServer(), FakePopulation(fed.identities), fed).run(c)  # type: ignore[arg-type]
    assert c.test["accuracy"] == 0.6 and c.test["loss"] == 0.9  # the round record's truth
    assert c.registry_metrics == {
        "accuracy": 0.8,
        "loss": 0.5,
        "precision": 0.7,
        "recall": 0.6,
        "f1": 0.65,
        "recall_gap": 0.2,
        "equalized_odds_difference": 0.1,
        "test_accuracy": 0.6,
        "test_loss": 0.9,
        "test_precision": 0.5,
        "test_recall": 0.4,
        "test_f1": 0.45,
        "test_recall_gap": 0.3,
        "modelled_latency_ms": 0.25,
        "parameters": 7.0,
        "size_bytes": 28.0,
    }


def test_reward_pays_the_emission_by_the_mechanism_and_records_it() -> None:
    market, fed, rec = FakeMarket(), federation(3), Recorder()
    c = ctx()
    c.accepted, c.rejected = [reply(0, 1.0), reply(1, 1.0)], ["client-002"]
    Reward(create_mechanism("equal"), 100.0, market, fed, rec).run(c)  # type: ignore[arg-type]
    assert c.issued == 100 * TOKEN
    tokens = {r.client: r.value for r in rec.rows if r.metric == names.REWARD_TOKENS and r.value}
    assert tokens == {"client-000": 50.0, "client-001": 50.0}


def test_slashed_tokens_is_what_the_stake_could_cover() -> None:
    market, fed, rec = FakeMarket(), federation(3), Recorder()
    market.state.stakes = {"client-001": 3 * TOKEN, "client-002": 10 * TOKEN}
    c = ctx()
    c.accepted, c.rejected = [reply(0, 1.0)], ["client-001", "client-002"]
    mech = create_mechanism("stake_slash", slash_amount=5 * TOKEN, base="equal")
    Reward(mech, 100.0, market, fed, rec).run(c)  # type: ignore[arg-type]
    slashed = {r.client: r.value for r in rec.rows if r.metric == names.SLASHED_TOKENS}
    # Asked 5 each: client-001 had 3 staked (shortfall 2), client-002 had 10.
    assert slashed == {"client-001": 3.0, "client-002": 5.0}
    assert market.state.shortfalls == {"client-001": 2 * TOKEN, "client-002": 0}


def test_attack_metrics_share_and_honest_profit() -> None:
    fed, rec = federation(3), Recorder()
    pop = FakePopulation(fed.identities, attacking=["client-002"])
    for a, tokens, cost in (("client-000", 30, 5), ("client-001", 30, 5), ("client-002", 40, 0)):
        rec.add(1, a, names.REWARD_TOKENS, tokens)
        rec.add(1, a, names.COST, cost)
    AttackMetrics(pop, fed, rec).run(ctx())  # type: ignore[arg-type]
    got = {r.metric: r.value for r in rec.rows if r.client == names.GLOBAL}
    assert got == {names.ATTACKER_TOKEN_SHARE: 0.4, names.HONEST_PROFIT: 25.0}


def test_attack_metrics_count_a_market_attacker_as_summary_csv_does() -> None:
    # client-002 trains honestly but is in a colluding cabal: an attacking owner, as
    # in summary.csv (Truth.attacker_owners). Tokens 50, 30, 20: share 20/100 = 0.2;
    # honest profit mean(50 − 5, 30 − 5) = 35.
    fed, rec = federation(3), Recorder()
    pop = FakePopulation(fed.identities, market={"colluding_cabal": ["client-002"]})
    for a, tokens, cost in (("client-000", 50, 5), ("client-001", 30, 5), ("client-002", 20, 0)):
        rec.add(1, a, names.REWARD_TOKENS, tokens)
        rec.add(1, a, names.COST, cost)
    AttackMetrics(pop, fed, rec).run(ctx())  # type: ignore[arg-type]
    got = {r.metric: r.value for r in rec.rows if r.client == names.GLOBAL}
    assert got == {names.ATTACKER_TOKEN_SHARE: pytest.approx(0.2), names.HONEST_PROFIT: 35.0}


def test_close_round_seals_the_block_and_records_the_round() -> None:
    market, fed, rec = FakeMarket(), federation(2), Recorder()
    seen = []
    c = ctx(3)
    c.sampled, c.accepted, c.test, c.issued = (
        [0, 1],
        [reply(0, 1.0)],
        {"accuracy": 0.9, "loss": 0.1},
        5 * TOKEN,
    )
    CloseRound(market, fed, rec, None, lambda: 12.0, seen.append).run(c)  # type: ignore[arg-type]
    assert market.kinds() == ["end_block"]
    (record,) = rec.rounds
    assert (record.round, record.time, record.sampled, record.accepted) == (3, 12.0, 2, 1)
    assert record.tokens_issued == 5.0 and seen == [record]
    assert record.aggregation_failed is False


def test_close_round_counts_a_failed_aggregation() -> None:
    rec = Recorder()
    c = ctx()
    c.test, c.failure = {"accuracy": 0.9, "loss": 0.1}, "no accepted update"
    CloseRound(FakeMarket(), federation(1), rec, None, lambda: 1.0).run(c)  # type: ignore[arg-type]
    assert rec.rounds[0].aggregation_failed is True


def test_stages_satisfy_the_protocol() -> None:
    assert isinstance(AdvanceClock(_time_model()), Stage)


def test_screen_times_local_steps_by_the_minibatches_trained_not_the_shard() -> None:
    """``training.local_steps`` 2 at batch 4: a 10-row client processes 2 × 4 = 8 rows,
    a 3-row client 2 × 3 = 6 (its whole shard each step), whatever its epochs."""
    fed = federation(2, W)
    stage = Screen(_time_model(), FakePopulation(fed.identities), fed, base_epochs=3, dp=False,
                   max_update_norm=100.0, deadline=None, local_steps=2, batch_size=4)  # type: ignore[arg-type]  # fmt: skip
    c = ctx()
    c.screened = [Screened(reply(0, 1.0, n=10), "client-000"), Screened(reply(1, 1.0, n=3), "x")]
    stage.run(c)
    assert [e.processed for e in c.screened] == [8, 6]
    # seconds = 3 · 1e8 · processed / 1e9 + 2 (network) + 1 (latency)
    assert [e.seconds for e in c.screened] == pytest.approx([2.4 + 3.0, 1.8 + 3.0])
