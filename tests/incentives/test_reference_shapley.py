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
from hypothesis import given, settings
from hypothesis import strategies as st

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
    # ψa = 3/√10, ψb = 1/√10; m = 0.5·0 + 0.5·ψ = (1.5, 0.5)/√10; the round holds all
    # the mass 1, so r = (3/4, 1/4).
    first = _cgsv_round(cg, ("a", "b"), [[1, 0], [0, 1]], [3, 1])
    assert first == pytest.approx((3 / math.sqrt(10), 1 / math.sqrt(10)))
    assert cg.reputations == pytest.approx({"a": 3 / 4, "b": 1 / 4})
    # Round 2: b (r = 1/4) and newcomer c (r = 0, weighs nothing): u_N = (0, 1/4),
    # ψb = ψc = 1; mb = 1/8 + 1/2 = 5/8, mc = 1/2. Absent a keeps exactly 3/4, so b and
    # c share 1/4 in proportion 5 : 4: rb = 5/36, rc = 4/36. (Normalising all three
    # instead, as before 2 December 2026, shrank a to 0.75/1.875 = 0.4.)
    second = _cgsv_round(cg, ("b", "c"), [[0, 1], [0, 1]], [1, 100])
    assert second == pytest.approx((1.0, 1.0))
    assert cg.reputations["a"] == 3 / 4
    assert cg.reputations == pytest.approx({"a": 27 / 36, "b": 5 / 36, "c": 4 / 36})
    # Round 3: a and c, weights 27 : 4, so u_N ∝ (27, 4): ψa = 27/√745, ψc = 4/√745;
    # ma = 27/72 + ψa/2, mc = 4/72 + ψc/2; absent b keeps 5/36, a and c share 31/36.
    third = _cgsv_round(cg, ("a", "c"), [[1, 0], [0, 1]], [1, 1])
    psi_a, psi_c = 27 / math.sqrt(745), 4 / math.sqrt(745)
    assert third == pytest.approx((psi_a, psi_c))
    m_a, m_c = 27 / 72 + psi_a / 2, 4 / 72 + psi_c / 2
    r_a, r_c = 31 / 36 * m_a / (m_a + m_c), 31 / 36 * m_c / (m_a + m_c)
    assert cg.reputations["b"] == 5 / 36
    assert cg.reputations == pytest.approx({"a": r_a, "b": 5 / 36, "c": r_c})
    # Round 4: only newcomers, so data sizes again: u_N = (1, 2), ψd = 1/√5, ψe = 2/√5.
    # The absent hold all the mass, so the 3 rated clients are scaled once by 3/5 and
    # d and e share the 2/5 left in proportion md : me = ψd : ψe = 1 : 2.
    before = cg.reputations
    fourth = _cgsv_round(cg, ("d", "e"), [[1, 0], [0, 1]], [1, 2])
    assert fourth == pytest.approx((1 / math.sqrt(5), 2 / math.sqrt(5)))
    kept = {c: r * (3 / 5) for c, r in before.items()}
    assert cg.reputations == pytest.approx({**kept, "d": 2 / 15, "e": 4 / 15})
    # Round 5: d (now rated, 2/15) with a (3/5·r_a): u_N = (ra5, 2/15) for d = (0, 1)
    # and a = (1, 0), so ψd = (2/15)/‖u_N‖, ψa = ra5/‖u_N‖; md = 1/15 + ψd/2,
    # ma = ra5/2 + ψa/2; they share what they held, 2/15 + ra5.
    ra5 = 3 / 5 * r_a
    norm = math.hypot(ra5, 2 / 15)
    fifth = _cgsv_round(cg, ("d", "a"), [[0, 1], [1, 0]], [1, 1])
    assert fifth == pytest.approx((2 / 15 / norm, ra5 / norm))
    m_d, m_a = 1 / 15 + (2 / 15 / norm) / 2, ra5 / 2 + (ra5 / norm) / 2
    held = 2 / 15 + ra5
    assert cg.reputations == pytest.approx(
        {
            "a": held * m_a / (m_a + m_d),
            "b": 5 / 36 * 3 / 5,
            "c": kept["c"],
            "d": held * m_d / (m_a + m_d),
            "e": 4 / 15,
        }
    )
    assert (cg.reputations["b"], cg.reputations["c"]) == (kept["b"], kept["c"])


def test_cgsv_rates_newcomers_when_the_first_clients_never_return() -> None:
    # Round 1's clients leave for good: the newcomers of round 2 still get mass (the
    # mean rated client's), so from round 3 on the aggregate weighs by reputation,
    # not by the data size a client reports (e reports 1000 examples).
    cg = create_evaluator("cgsv", alpha=0.5)
    _cgsv_round(cg, ("a", "b"), [[1, 0], [0, 1]], [1, 1])
    _cgsv_round(cg, ("c", "d", "e"), [[1, 0], [1, 0], [0, 1]], [1, 1, 1])
    assert cg.reputations["a"] == pytest.approx(2 / 5 * 1 / 2)
    assert sum(cg.reputations[c] for c in "cde") == pytest.approx(3 / 5)
    # Round 3: c and d (rated, pointing along x) outweigh e however much it reports.
    third = _cgsv_round(cg, ("c", "d", "e"), [[1, 0], [1, 0], [0, 1]], [1, 1, 1000])
    assert third[0] == third[1] > third[2]


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sets(st.sampled_from("abcdefgh"), min_size=1, max_size=5),
            st.integers(0, 2**32 - 1),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_cgsv_sampled_rounds_move_only_the_rounds_clients(
    rounds: list[tuple[set[str], int]],
) -> None:
    # Whatever the sampling: a client outside the round keeps its reputation bit for
    # bit (unless the round has only newcomers), the round's rated clients keep the
    # mass they held between them, every reputation is positive and the total stays 1.
    cg = create_evaluator("cgsv")
    for members, seed in rounds:
        clients = tuple(sorted(members))
        rng = np.random.default_rng(seed)
        before = cg.reputations
        _cgsv_round(cg, clients, rng.normal(size=(len(clients), 3)).tolist(), [1] * len(clients))
        after = cg.reputations
        outside = {c: r for c, r in before.items() if c not in members}
        if before and not any(c in before for c in members):
            # A round of only newcomers scales the rated, all by the same factor.
            keep = len(before) / (len(before) + len(members))
            outside = {c: r * keep for c, r in outside.items()}
        assert {c: r for c, r in after.items() if c not in members} == outside
        held = sum(before.get(c, 0.0) for c in clients)
        if held > 0.0:
            assert sum(after[c] for c in clients) == pytest.approx(held, rel=1e-12)
        assert all(r > 0.0 for r in after.values())
        assert sum(after.values()) == pytest.approx(1.0, rel=1e-12)


def test_cgsv_a_round_holding_less_than_rounding_keeps_what_it_held() -> None:
    # 1 − Σ absent is 0 in floats when the round's clients hold ~1e-17 of the mass:
    # they share what they held instead, so nobody's reputation becomes 0.
    cg = create_evaluator("cgsv")
    cg._reputation = {"a": 1.0, "b": 1e-17}
    _cgsv_round(cg, ("b",), [[1, 0]], [1])
    assert cg.reputations == {"a": 1.0, "b": 1e-17}


def test_cgsv_needs_who_the_clients_are_and_a_valid_alpha() -> None:
    with pytest.raises(ValueError, match="alpha must be in"):
        create_evaluator("cgsv", alpha=1.5)
    data = RoundData(num_clients=1, updates=(np.ones(2),), weights=(1.0,))
    with pytest.raises(ValueError, match=r"needs RoundData\.clients"):
        create_evaluator("cgsv").evaluate(data, rng=np.random.default_rng(0))
