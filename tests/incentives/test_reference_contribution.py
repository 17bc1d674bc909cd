"""The reference contribution (``contribution.reference: true``): Shapley values under
the configured aggregator's own coalition models, exact up to ``exact_max_clients``,
Monte Carlo with standard errors above. Expected values are derived by hand or by
brute force in this file, never taken from the code under test."""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from marketplace.contribution import (
    exact_shapley,
    monte_carlo_shapley,
    reference_shapley,
)
from simulation import names
from simulation.config.schema import ContributionConfig
from simulation.fl.aggregation import create_strategy, min_replies
from simulation.fl.coalition import CoalitionReply, aggregator_utility
from simulation.fl.messages import ReplyMetrics, aggregation_reply
from simulation.rng import SeedTree
from simulation.world.context import Recorder, RoundContext
from simulation.world.records import Reply
from simulation.world.stages import Aggregate, ScoreContributions
from tests.world.fakes import FakeMarket, federation

# ------------------------------------------------------------- the games


def test_exact_reference_on_a_hand_solved_three_client_game() -> None:
    # U(∅)=0, U(0)=U(1)=U(2)=1, U(01)=3, U(02)=U(12)=2, U(012)=4.
    # φ0 = 1/3·1 + 1/6·(3−1) + 1/6·(2−1) + 1/3·(4−2) = 1/3 + 1/3 + 1/6 + 2/3 = 3/2,
    # φ1 = φ0 by symmetry, φ2 = 4 − 3 = 1 by efficiency.
    table = {(): 0, (0,): 1, (1,): 1, (2,): 1, (0, 1): 3, (0, 2): 2, (1, 2): 2, (0, 1, 2): 4}
    game = {frozenset(k): float(v) for k, v in table.items()}

    result = reference_shapley(game.__getitem__, 3, rng=np.random.default_rng(0))

    assert result.scores == pytest.approx((1.5, 1.5, 1.0), abs=1e-12)
    assert result.method == "exact_shapley" and result.standard_errors is None


WEIGHTS = np.array([0.5, 1.0, 1.5, 2.0, -0.5, 0.25, 3.0, 0.0, 1.25, -1.0, 0.75, 2.5])


def _square_of_sum(coalition: frozenset[int]) -> float:
    """``U(S) = (Σ_{i∈S} w_i)²``, whose Shapley value is ``w_i · Σ_j w_j``: the pair
    term ``2 w_i w_j`` is split equally, the square ``w_i²`` is ``i``'s own."""
    return float(sum(WEIGHTS[i] for i in coalition)) ** 2


def _brute_force_shapley(utility, n: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Shapley's subset formula by enumerating every coalition, written here from the
    definition (independent of ``marketplace.contribution``)."""
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for k in range(n):
            weight = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
            for rest in itertools.combinations(others, k):
                s = frozenset(rest)
                phi[i] += weight * (utility(s | {i}) - utility(s))
    return phi


def test_reference_is_exact_at_twelve_clients() -> None:
    n = 12
    analytic = WEIGHTS * WEIGHTS.sum()

    result = reference_shapley(_square_of_sum, n, rng=np.random.default_rng(0))

    assert ContributionConfig().exact_max_clients == 12
    assert result.method == "exact_shapley" and result.utility_calls == 2**n
    np.testing.assert_allclose(result.scores, analytic, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(_brute_force_shapley(_square_of_sum, n), analytic, atol=1e-9)


def test_monte_carlo_standard_error_shrinks_as_one_over_root_permutations() -> None:
    n = 12
    exact = WEIGHTS * WEIGHTS.sum()
    errors = {}
    for t in (100, 400, 1600):
        res = monte_carlo_shapley(
            _square_of_sum, n, rng=np.random.default_rng(t), min_permutations=t, max_permutations=t
        )
        assert res.standard_errors is not None
        se = np.array(res.standard_errors)
        errors[t] = se
        # Covers exact: every client within 4 SE, and at least 10 of 12 within 2 SE.
        gap = np.abs(np.array(res.scores) - exact)
        assert np.all(gap <= 4 * se), (t, gap / se)
        assert int(np.sum(gap <= 2 * se)) >= 10, (t, gap / se)
    # Four times the permutations halve every client's standard error (±20 %);
    # client 7 (w = 0) is a null player: its marginals are all 0.
    live = WEIGHTS != 0
    for small, large in ((100, 400), (400, 1600)):
        ratio = errors[small][live] / errors[large][live]
        np.testing.assert_allclose(ratio, 2.0, rtol=0.2)
    assert errors[1600][~live] == pytest.approx([0.0])


def test_monte_carlo_stops_once_every_standard_error_meets_the_rule() -> None:
    n, tolerance = 13, 0.05
    weights = np.linspace(0.5, 1.5, n)

    def utility(c: frozenset[int]) -> float:
        return float(sum(weights[i] for i in c)) ** 2

    res = reference_shapley(utility, n, rng=np.random.default_rng(3))

    assert res.method == "monte_carlo_shapley" and res.standard_errors is not None
    target = tolerance * abs(utility(frozenset(range(n))) - utility(frozenset())) / n
    assert max(res.standard_errors) <= target
    np.testing.assert_allclose(res.scores, weights * weights.sum(), atol=4 * target)


def test_cache_repeats_count_the_lookups_the_cache_answered() -> None:
    # Two clients, 100 permutations: U(∅) and U(N) first, then 2 look-ups per
    # permutation, 202 in all, of 4 distinct coalitions: 198 answered by the cache.
    def utility(c: frozenset[int]) -> float:
        return float(len(c))

    res = monte_carlo_shapley(
        utility, 2, rng=np.random.default_rng(0), min_permutations=100, max_permutations=100
    )
    assert (res.utility_calls, res.cache_repeats) == (4, 198)
    assert exact_shapley(utility, 2).cache_repeats == 0


def _quorum(coalition: frozenset[int]) -> float:
    """Four clients, ``U(S) = 1`` once ``|S| ≥ 3``: φ_i = 1/4 by symmetry; a client's
    marginal is 1 exactly when it comes third (probability 1/4), so its standard
    deviation is √(3/16) ≈ 0.433 and its standard error after ``T`` permutations
    0.433/√T. The target is 0.05 · (1 − 0) / 4 = 0.0125: met from T ≈ 1,200 on."""
    return 1.0 if len(coalition) >= 3 else 0.0


QUORUM_TARGET = 0.05 * 1.0 / 4


def test_monte_carlo_reports_its_target_and_whether_it_met_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    incentives = logging.getLogger("fedmarket.incentives")
    incentives.addHandler(caplog.handler)
    try:
        capped = monte_carlo_shapley(_quorum, 4, rng=np.random.default_rng(0), max_permutations=100)
        enough = monte_carlo_shapley(
            _quorum, 4, rng=np.random.default_rng(0), max_permutations=2000
        )
    finally:
        incentives.removeHandler(caplog.handler)
    assert capped.se_target == enough.se_target == pytest.approx(QUORUM_TARGET, rel=1e-12)
    assert capped.converged is False and capped.standard_errors is not None
    # 0.433/√100 ≈ 0.043, about 3.5 times the target (the largest of 4 sample SEs).
    assert 3.0 <= max(capped.standard_errors) / QUORUM_TARGET <= 4.2
    assert enough.converged is True and enough.standard_errors is not None
    assert max(enough.standard_errors) <= QUORUM_TARGET
    assert enough.scores == pytest.approx((0.25,) * 4, abs=4 * QUORUM_TARGET)
    # The estimator only reports: what a miss means is the caller's decision.
    assert caplog.records == []
    exact = reference_shapley(_quorum, 4, rng=np.random.default_rng(0))
    assert (exact.se_target, exact.converged) == (None, None)


# --------------------------------------------- the configured aggregator's models

ONE = {"w": np.zeros(1, np.float32)}
HONEST, OUTLIER = 1.0, 5.0


def _replies() -> list[CoalitionReply]:
    """Clients 0–2 at the target 1.0, client 3 an outlier at 5.0, 10 examples each."""
    values = [HONEST, HONEST, HONEST, OUTLIER]
    return [CoalitionReply(i, {"w": np.array([v], np.float32)}, 10) for i, v in enumerate(values)]


def _distance(flat: np.ndarray) -> float:
    return -float((flat[0] - HONEST) ** 2)


def _utility(strategy: str, params: dict[str, int]):  # type: ignore[no-untyped-def]
    return aggregator_utility(
        create_strategy(strategy, params),
        min_replies(strategy, params),
        1,
        ONE,
        _replies(),
        _distance,
    )


def test_reference_under_krum_differs_from_the_fedavg_counterfactual() -> None:
    # Krum (f = 0) needs 2f + 3 = 3 replies; below that the round keeps the global
    # model 0, U = −1. From 3 replies on Krum selects an honest update (the outlier's
    # squared distance 16 to its nearest neighbour loses to 0), so U = 0: only the
    # quorum matters and the game is symmetric, φ_i = (0 − (−1)) / 4 = 1/4 each.
    krum = exact_shapley(_utility("krum", {"num_malicious_nodes": 0}), 4)
    assert krum.scores == pytest.approx((0.25,) * 4, abs=1e-12)
    # FedAvg: with k honest updates and the outlier the mean is 1 + 4/(k+1), so
    # U = −16/(k+1)²; without the outlier U = 0 (U(∅) = −1). The outlier's marginal
    # at position k is −15, −4, −16/9, −1: φ3 = −49/9; U(N) − U(∅) = 0 leaves 49/27
    # to each honest client.
    fedavg = exact_shapley(_utility("fedavg", {}), 4)
    assert fedavg.scores == pytest.approx((49 / 27,) * 3 + (-49 / 9,), abs=1e-9)


def test_coalitions_below_bulyans_minimum_keep_the_global_model() -> None:
    # Bulyan with f = 0 needs 4f + 3 = 3 replies.
    utility = _utility("bulyan", {"num_malicious_nodes": 0})
    assert min_replies("bulyan", {"num_malicious_nodes": 1}) == 7
    assert utility(frozenset()) == utility(frozenset({0, 3})) == -1.0
    assert utility(frozenset({0, 1, 2})) == pytest.approx(0.0)


def test_multikrum_minimum_covers_the_updates_it_selects() -> None:
    assert min_replies("multikrum", {"num_malicious_nodes": 1, "num_nodes_to_select": 7}) == 7
    assert min_replies("multikrum", {"num_malicious_nodes": 1, "num_nodes_to_select": 2}) == 5
    assert min_replies("fedmedian", {}) == 1


def _record(weights: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()})


def _real_round(strategy: Any, replies: list[CoalitionReply]) -> float:
    """The utility of the model the strategy really builds from every reply, round 1."""
    strategy.set_global(_record(ONE))
    msgs = [aggregation_reply(1, r.client, r.weights, r.num_examples) for r in replies]
    arrays, _ = strategy.aggregate_train(1, msgs)
    assert arrays is not None
    return _distance(np.asarray(arrays["w"].numpy(), np.float64))


def test_foolsgold_what_if_leaves_the_histories_and_matches_the_real_round() -> None:
    strategy = create_strategy("foolsgold", {})
    replies = _replies()
    utility = aggregator_utility(strategy, 1, 1, ONE, replies, _distance)
    everyone = utility(frozenset(range(4)))
    utility(frozenset({0, 3}))
    assert strategy.histories == {}
    assert everyone == pytest.approx(_real_round(strategy, replies))


def test_dp_fedavg_what_if_draws_the_rounds_noise_and_accounts_nothing() -> None:
    dp = {"mode": "dp-fedavg", "noise_multiplier": 1.0, "clipping_norm": 10.0}
    strategy = create_strategy("fedavg", {}, dp, rng=np.random.default_rng(7))
    replies = _replies()
    utility = aggregator_utility(strategy, 1, 1, ONE, replies, _distance, cohort=(4, 4))
    everyone = utility(frozenset(range(4)))
    assert utility(frozenset({0})) != everyone
    assert strategy.accountant.counts == {} and strategy.last_epsilon is None
    strategy.set_cohort(4, 4)
    assert everyone == pytest.approx(_real_round(strategy, replies))


def test_fltrust_what_if_trains_the_root_update_once_per_round() -> None:
    calls = []

    def root(round_: int, glob: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(round_)
        return {"w": glob["w"] + 1.0}

    strategy = create_strategy("fltrust", {})
    strategy.set_root_update(root)
    utility = aggregator_utility(strategy, 1, 1, ONE, _replies(), _distance)
    for k in range(1, 5):
        for c in itertools.combinations(range(4), k):
            utility(frozenset(c))
    # Every update points along the root update (+1) and is rescaled to its norm: 1.
    assert utility(frozenset({3})) == pytest.approx(0.0)
    assert calls == [1]


# ------------------------------------------------------------------- the stage


def _stage_round() -> tuple[RoundContext, list[Reply]]:
    c = RoundContext(round=1, start=0.0, wall_start=0.0)
    values = [HONEST, HONEST, HONEST, OUTLIER]
    c.accepted = [
        Reply(i, {"w": np.array([v], np.float32)}, ReplyMetrics(10)) for i, v in enumerate(values)
    ]
    c.eligible, c.sampled = 4, [0, 1, 2, 3]
    return c, c.accepted


KRUM = {"num_malicious_nodes": 0}


def _krum_reference_round(
    cfg: ContributionConfig, fed: Any, rec: Recorder, strategy: Any
) -> RoundContext:
    """Score :func:`_stage_round` under Krum (f = 0) with the reference ``cfg`` asks for."""
    stage = ScoreContributions(
        cfg,
        None,
        _distance,
        SeedTree(0),
        fed,
        FakeMarket(),  # type: ignore[arg-type]
        rec,
        strategy=strategy,
        min_replies=min_replies("krum", KRUM),
    )
    c, _ = _stage_round()
    stage.run(c)
    return c


@pytest.mark.parametrize(
    ("exact_max", "expected"), [(12, "exact"), (3, "monte carlo")], ids=["exact", "mc"]
)
def test_score_stage_records_the_krum_reference_and_its_standard_errors(
    exact_max: int, expected: str
) -> None:
    fed, rec = federation(4, {"w": np.zeros(1, np.float32)}), Recorder()
    strategy = create_strategy("krum", KRUM)
    c = _krum_reference_round(
        ContributionConfig(reference=True, exact_max_clients=exact_max), fed, rec, strategy
    )
    truth = [r.value for r in rec.rows if r.metric == names.TRUE_CONTRIBUTION]
    ses = [r.value for r in rec.rows if r.metric == names.TRUE_CONTRIBUTION_SE]
    if expected == "exact":
        assert truth == pytest.approx([0.25] * 4) and ses == []
    else:
        assert len(ses) == 4 and all(s >= 0 for s in ses)
        assert sum(truth) == pytest.approx(1.0)  # every permutation's marginals sum to U(N) − U(∅)
        assert truth == pytest.approx([0.25] * 4, abs=4 * max(ses) + 1e-12)
    # Computing the reference changed nothing: the real round still aggregates.
    Aggregate(strategy, fed, rec, 0.05).run(c)
    assert fed.weights["w"] == pytest.approx([HONEST])


@pytest.mark.parametrize(("cap", "converged"), [(100, False), (2000, True)])
def test_score_stage_runs_the_reference_under_the_scenarios_permutation_cap(
    cap: int, converged: bool
) -> None:
    # Under Krum (f = 0) the four-client round is the quorum game above: only the
    # third reply changes the model, so 100 permutations miss the 0.0125 target and
    # the default 2,000 meet it.
    cfg = ContributionConfig(reference=True, exact_max_clients=3, reference_max_permutations=cap)
    fed = federation(4, {"w": np.zeros(1, np.float32)})
    c = _krum_reference_round(cfg, fed, Recorder(), create_strategy("krum", KRUM))
    assert c.reference is not None and c.reference.converged is converged
    assert c.reference.se_target == pytest.approx(QUORUM_TARGET, rel=1e-9)
