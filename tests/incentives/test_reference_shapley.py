"""Estimators against references computed independently of the code under test.

* exact Shapley against the *permutation* definition, ``φ_i = (1/n!) Σ_π
  [v(P_π(i) ∪ {i}) − v(P_π(i))]`` by brute force over all n! orderings (the
  estimator uses the subset-weight formula instead), on random games with
  adversarial structure (negative values, ties, null and duplicate players),
  n from 1 (the minimum) to 6;
* leave-one-out by its definition;
* TMC and GTG converge to exact Shapley when truncation is off and enough
  permutations are drawn;
* CGSV (Xu et al. 2021) by hand.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from marketplace.contribution import (
    EVALUATORS,
    RoundData,
    cgsv,
    create_evaluator,
    exact_shapley,
    gtg_shapley,
    leave_one_out,
    tmc_shapley,
)

Game = dict[frozenset[int], float]


def _random_game(n: int, seed: int) -> Game:
    rng = np.random.default_rng(seed)
    game = {
        frozenset(c): float(rng.normal())
        for k in range(n + 1)
        for c in itertools.combinations(range(n), k)
    }
    game[frozenset()] = 0.0
    return game


def _with_null_and_twin(n: int, seed: int) -> Game:
    """Player n−1 is null (adds nothing), player n−2 is a twin of player 0."""
    base = _random_game(n - 2, seed)

    def value(c: frozenset[int]) -> float:
        core = frozenset(i for i in c if i < n - 2)
        if n - 2 in c and 0 not in c:
            core = core | {0}
        return base[core]

    return {
        frozenset(c): value(frozenset(c))
        for k in range(n + 1)
        for c in itertools.combinations(range(n), k)
    }


def _by_permutations(game: Game, n: int) -> np.ndarray:
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        prefix: frozenset[int] = frozenset()
        for i in order:
            phi[i] += game[prefix | {i}] - game[prefix]
            prefix = prefix | {i}
    return phi / math.factorial(n)


GAMES = [(n, s, _random_game(n, s)) for n, s in ((1, 0), (2, 1), (3, 2), (4, 3), (6, 4))]
GAMES += [(5, 5, _with_null_and_twin(5, 5)), (6, 6, _with_null_and_twin(6, 6))]
GAMES += [(4, 7, dict.fromkeys(_random_game(4, 7), 1.0) | {frozenset(): 0.0})]  # all ties


@pytest.mark.parametrize(("n", "seed", "game"), GAMES, ids=[f"n{n}-s{s}" for n, s, _ in GAMES])
def test_exact_shapley_is_the_permutation_definition(n: int, seed: int, game: Game) -> None:
    result = exact_shapley(game.__getitem__, n)

    np.testing.assert_allclose(result.scores, _by_permutations(game, n), rtol=1e-9, atol=1e-12)
    assert result.utility_calls == 2**n


def test_null_player_gets_zero_and_twins_get_equal_values() -> None:
    n, game = 6, _with_null_and_twin(6, 6)
    phi = np.array(exact_shapley(game.__getitem__, n).scores)

    assert phi[n - 1] == pytest.approx(0.0, abs=1e-12)
    assert phi[n - 2] == pytest.approx(phi[0], rel=1e-9)


def test_leave_one_out_is_its_definition() -> None:
    n, game = 5, _random_game(5, 11)
    everyone = frozenset(range(n))

    result = leave_one_out(game.__getitem__, n)

    assert result.scores == tuple(game[everyone] - game[everyone - {i}] for i in range(n))


NO_TRUNCATION = [
    (tmc_shapley, {"max_permutations": 6000, "truncation_tolerance": 0.0}),
    (gtg_shapley, {"max_sweeps": 1200, "within_round_tolerance": 0.0}),
]


@pytest.mark.parametrize(("method", "budget"), NO_TRUNCATION, ids=["tmc", "gtg"])
def test_sampling_estimators_converge_to_exact_without_truncation(method, budget) -> None:  # type: ignore[no-untyped-def]
    n, game = 5, _random_game(5, 12)
    exact = np.array(exact_shapley(game.__getitem__, n).scores)

    result = method(
        game.__getitem__, n, rng=np.random.default_rng(0), convergence_tolerance=0.0, **budget
    )

    np.testing.assert_allclose(result.scores, exact, atol=0.05 * np.abs(exact).max())


def test_gtg_draws_at_least_max_30_n_permutations() -> None:
    # The authors' reference code: converge_min = max(30, n). With n = 4 that is
    # 30 permutations, rounded up to 8 whole sweeps of 4; a flat game converges at once.
    seen = []

    def spy(c: frozenset[int]) -> float:
        seen.append(c)
        return float(len(c))

    result = gtg_shapley(spy, 4, rng=np.random.default_rng(0), within_round_tolerance=0.0)
    assert result.scores == pytest.approx((1.0, 1.0, 1.0, 1.0))
    # Every coalition of a 4-player game is reached by 32 permutations.
    assert result.utility_calls == 16


def test_cgsv_by_hand() -> None:
    # u0 = (3, 4) (|u0| = 5), u1 = (0, 2), u2 = (0, 0) (a free-rider), u3 = (−6, −8).
    # Unit vectors: (0.6, 0.8), (0, 1), —, (−0.6, −0.8): u_N = (0, 1).
    # ψ0 = cos((3,4), (0,1)) = 0.8, ψ1 = 1, ψ2 = 0 (no direction), ψ3 = −0.8.
    updates = [np.array([3.0, 4.0]), np.array([0.0, 2.0]), np.zeros(2), np.array([-6.0, -8.0])]

    result = cgsv(updates)

    assert result.scores == pytest.approx((0.8, 1.0, 0.0, -0.8))
    assert result.utility_calls == 0 and result.method == "cgsv"
    # Scaling an update does not buy influence (every update is normalised).
    scaled = cgsv([100 * updates[0], *updates[1:]])
    assert scaled.scores == pytest.approx(result.scores)
    # Reputations weight the aggregate: r = (1, 0, 0, 0) gives u_N = u0.
    assert cgsv(updates, [1.0, 0.0, 0.0, 0.0]).scores[0] == pytest.approx(1.0)


def test_cgsv_is_a_registered_evaluator() -> None:
    assert "cgsv" in EVALUATORS


def _cgsv_round(evaluator: Any, clients: tuple[str, ...], rows: list, sizes: list) -> Any:
    updates = tuple(np.asarray(r, dtype=np.float64) for r in rows)
    data = RoundData(
        num_clients=len(clients),
        updates=updates,
        weights=tuple(float(s) for s in sizes),
        clients=clients,
    )
    return evaluator.evaluate(data, rng=np.random.default_rng(0)).scores


def test_cgsv_keeps_reputations_per_client_across_sampled_rounds() -> None:
    cg = create_evaluator("cgsv", alpha=0.5)
    # Round 1 (nobody has a reputation): weights are data sizes 3 : 1, u_N = (3, 1).
    # ψa = 3/√10, ψb = 1/√10; r = 0.5·0 + 0.5·ψ = (1.5, 0.5)/√10 → normalised (0.75, 0.25).
    first = _cgsv_round(cg, ("a", "b"), [[1, 0], [0, 1]], [3, 1])
    assert first == pytest.approx((3 / math.sqrt(10), 1 / math.sqrt(10)))
    # Round 2: b (r = 0.25) and newcomer c (r = 0, weighs nothing): u_N = (0, 0.25).
    # ψb = 1, ψc = cos((1, 1), (0, 1)) = 1/√2; rb = 0.125 + 0.5 = 0.625,
    # rc = 0.5/√2 = √0.125; a keeps 0.75 (normalising rescales all three alike).
    second = _cgsv_round(cg, ("b", "c"), [[0, 1], [1, 1]], [1, 100])
    assert second == pytest.approx((1.0, 1 / math.sqrt(2)))
    # Round 3: a and c, weights ∝ (0.75, √0.125): u_N ∝ (0.75, √0.125), |u_N|² = 0.6875.
    third = _cgsv_round(cg, ("a", "c"), [[1, 0], [0, 1]], [1, 1])
    assert third == pytest.approx((math.sqrt(9 / 11), math.sqrt(2 / 11)))
    # Round 4: only newcomers, so data sizes again: u_N = (1, 2).
    fourth = _cgsv_round(cg, ("d", "e"), [[1, 0], [0, 1]], [1, 2])
    assert fourth == pytest.approx((1 / math.sqrt(5), 2 / math.sqrt(5)))


def test_cgsv_needs_who_the_clients_are_and_a_valid_alpha() -> None:
    with pytest.raises(ValueError, match="alpha must be in"):
        create_evaluator("cgsv", alpha=1.5)
    data = RoundData(num_clients=1, updates=(np.ones(2),), weights=(1.0,))
    with pytest.raises(ValueError, match=r"needs RoundData\.clients"):
        create_evaluator("cgsv").evaluate(data, rng=np.random.default_rng(0))
