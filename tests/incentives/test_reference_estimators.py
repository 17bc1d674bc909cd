"""Contribution estimators against independent references, on the same inputs (rtol 1e-6).

Vectors (tests/fixtures/references/, each with the script that made it in a scratch
environment; the mappings that make the definitions coincide are in those scripts
and in docs/contribution.md):

* ``pydvl.json``: pyDVL 0.10.0's exact Shapley, leave-one-out and TMC-Shapley;
* ``flce.json``: FLCE's (VLDB 2024 benchmark) TMC-Shapley and GTG-Shapley;
* ``gtg.json``: GTG-Shapley by its authors (cyyever/torch_algorithm);
* ``cgsv.json``: CGSV by its authors (Xu et al. 2021's own code) and ``cosine``
  against scikit-learn.

The Shapley-family inputs are utility tables over all coalitions (adversarial games,
n = 3..8). Sampling estimators are deterministic given their permutations: each
vector stores the permutations the reference drew, and :class:`Replay` hands them to
FedMarket's estimator through the ``permutation`` method it calls on its RNG. The
estimators are built by name with ``create_evaluator``, as a scenario builds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from marketplace.contribution import RoundData, cgsv, create_evaluator
from tests.fixtures.references._reference import read_vectors

PYDVL = read_vectors("pydvl.json")["cases"]
FLCE = read_vectors("flce.json")["cases"]
GTG = read_vectors("gtg.json")["cases"]
CGSV = read_vectors("cgsv.json")
CGSV_ALPHA = 0.8  # the α cgsv_vectors.py ran the authors' code with

RTOL, ATOL = 1e-6, 1e-12


class Replay:
    """An RNG stand-in that returns recorded permutations, in order, and checks sizes."""

    def __init__(self, draws: Sequence[Sequence[int]]) -> None:
        self.draws = [np.asarray(d, dtype=np.int64) for d in draws]

    def permutation(self, n: int) -> np.ndarray:
        assert self.draws, "the estimator drew more permutations than the reference"
        draw = self.draws.pop(0)
        assert len(draw) == n, f"asked for a permutation of {n}, recorded one of {len(draw)}"
        return draw

    def finished(self) -> bool:
        return not self.draws


def guided(permutations: Sequence[Sequence[int]], n: int) -> Replay:
    """GTG's draws: permutation ``k`` starts with client ``k mod n``; FedMarket shuffles
    the others (in increasing order) with ``permutation(n − 1)``, so replay each tail
    as positions among them."""
    tails = []
    for k, order in enumerate(permutations):
        assert order[0] == k % n, "guided sampling puts client k mod n first"
        rest = [c for c in range(n) if c != order[0]]
        tails.append([rest.index(c) for c in order[1:]])
    return Replay(tails)


def _data(case: dict[str, Any]) -> RoundData:
    values = case["values"]
    return RoundData(
        num_clients=case["n"],
        utility=lambda coalition: values[sum(1 << i for i in coalition)],
    )


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


def _runs(cases: list[dict[str, Any]], key: str) -> list[Any]:
    return [
        pytest.param(case, run, id=f"{case['name']}-{k}")
        for case in cases
        for k, run in enumerate(case[key])
    ]


def _score(name: str, case: dict[str, Any], rng: Any, **params: Any) -> np.ndarray:
    result = create_evaluator(name, **params).evaluate(_data(case), rng=rng)
    return np.asarray(result.scores)


# ------------------------------------------------------------------ pyDVL 0.10.0; TMC also FLCE


@pytest.mark.parametrize("case", PYDVL, ids=_ids(PYDVL))
def test_exact_shapley_and_loo_match_pydvl(case: dict[str, Any]) -> None:
    no_rng = Replay([])

    np.testing.assert_allclose(_score("exact_shapley", case, no_rng), case["exact"], RTOL, ATOL)
    np.testing.assert_allclose(_score("loo", case, no_rng), case["loo"], RTOL, ATOL)


@pytest.mark.parametrize(
    ("case", "run"),
    [pytest.param(*p.values, id=f"pydvl-{p.id}") for p in _runs(PYDVL, "tmc")]
    + [pytest.param(*p.values, id=f"flce-{p.id}") for p in _runs(FLCE, "tmc")],
)
def test_tmc_matches_pydvl_and_flce_on_their_permutations(
    case: dict[str, Any], run: dict[str, Any]
) -> None:
    rng = Replay(run["permutations"])

    got = _score(
        "tmc_shapley",
        case,
        rng,
        max_permutations=run["max_permutations"],
        truncation_tolerance=run["truncation_tolerance"],
        convergence_tolerance=0.0,
    )

    np.testing.assert_allclose(got, run["shapley"], RTOL, ATOL)
    assert rng.finished()


# ------------------------------------------------------------------ FLCE


@pytest.mark.parametrize(("case", "run"), _runs(FLCE, "gtg"))
def test_gtg_matches_flce_on_its_permutations(case: dict[str, Any], run: dict[str, Any]) -> None:
    rng = guided(run["permutations"], case["n"])

    got = _score(
        "gtg_shapley",
        case,
        rng,
        max_sweeps=run["max_sweeps"],
        min_permutations=run["max_sweeps"] * case["n"],
        within_round_tolerance=run["within_round_tolerance"],
        between_round_tolerance=run["between_round_tolerance"],
    )

    np.testing.assert_allclose(got, run["shapley"], RTOL, ATOL)
    # FLCE draws its permutations before its between-round test; a skipped round uses none.
    skipped = abs(case["values"][-1] - case["values"][0]) <= run["between_round_tolerance"]
    assert rng.finished() != skipped


# ------------------------------------------------------------------ GTG's authors


def authors_normalisation(values: np.ndarray, gain: float) -> np.ndarray:
    """cyyever/torch_algorithm's ``normalize_shapley_values`` (shapley_value.py l. 55-69),
    written from its definition: scale so that the values with the gain's sign sum to the
    gain (a sum of 0, the only one ``math.isclose(sum, 0)`` accepts, becomes ±1e-9)."""
    same_sign = values[values >= 0] if gain >= 0 else values[values < 0]
    total = float(same_sign.sum())
    if total == 0.0:
        total = 1e-9 if gain >= 0 else -1e-9
    return gain * values / total


@pytest.mark.parametrize(("case", "run"), _runs(GTG, "gtg"))
def test_gtg_matches_its_authors_code(case: dict[str, Any], run: dict[str, Any]) -> None:
    n, values = case["n"], case["values"]
    rng = guided(run["permutations"], n)

    got = _score(
        "gtg_shapley",
        case,
        rng,
        max_sweeps=run["max_sweeps"],
        min_permutations=run["max_sweeps"] * n,
        within_round_tolerance=run["within_round_tolerance"],
        between_round_tolerance=run["between_round_tolerance"],
    )

    assert rng.finished()
    if run["skipped"]:  # between-round truncation: the authors record nothing, we pay 0
        np.testing.assert_array_equal(got, np.zeros(n))
        return
    np.testing.assert_allclose(got, run["mean_marginals"], RTOL, ATOL)
    gain = values[-1] - values[0]
    np.testing.assert_allclose(authors_normalisation(got, gain), run["shapley"], RTOL, ATOL)


def _truncation_changes_the_values(case: dict[str, Any], orders: Any, threshold: float) -> bool:
    """Whether stopping each permutation at the first prefix within ``threshold`` of
    U(N) gives other mean marginals than scanning every permutation to the end."""
    values, n = case["values"], case["n"]
    full, cut, whole = values[-1], np.zeros(n), np.zeros(n)
    for order in orders:
        mask, stopped = 0, False
        for client in order:
            stopped = stopped or abs(full - values[mask]) <= threshold
            marginal = values[mask | 1 << client] - values[mask]
            whole[client] += marginal
            cut[client] += 0.0 if stopped else marginal
            mask |= 1 << client
    return not np.allclose(cut, whole, RTOL, ATOL)


@pytest.mark.parametrize(
    ("cases", "key", "tolerance"),
    [
        (PYDVL, "tmc", "truncation_tolerance"),
        (FLCE, "tmc", "truncation_tolerance"),
        (FLCE, "gtg", "within_round_tolerance"),
        (GTG, "gtg", "within_round_tolerance"),
    ],
    ids=["pydvl-tmc", "flce-tmc", "flce-gtg", "authors-gtg"],
)
def test_the_vectors_exercise_truncation(cases: Any, key: str, tolerance: str) -> None:
    # Vectors in which truncation never changed a value could not tell a wrong
    # truncation rule from a right one.
    changed = sum(
        _truncation_changes_the_values(
            case,
            run["permutations"],
            run[tolerance] * abs(case["values"][-1] - case["values"][0]),
        )
        for case in cases
        for run in case[key]
        if run["permutations"]
    )
    assert changed >= 3
    assert key != "gtg" or any(
        abs(c["values"][-1] - c["values"][0]) <= run["between_round_tolerance"]
        for c in cases
        for run in c["gtg"]
    ), "no round for between-round truncation"


# ------------------------------------------------------------------ CGSV's authors, cosine


CGSV_ITERATIONS = [
    pytest.param(it, id=f"{case['name']}-t{t}")
    for case in CGSV["cgsv"]
    for t, it in enumerate(case["iterations"])
]


@pytest.mark.parametrize("iteration", CGSV_ITERATIONS)
def test_cgsv_matches_its_authors_code(iteration: dict[str, Any]) -> None:
    updates = [np.asarray(u) for u in iteration["updates"]]

    got = cgsv(updates, reputations=iteration["weights"]).scores

    np.testing.assert_allclose(got, iteration["phis"], RTOL, ATOL)


@pytest.mark.parametrize("case", CGSV["cgsv"], ids=_ids(CGSV["cgsv"]))
def test_the_cgsv_scenario_entry_runs_the_authors_rounds(case: dict[str, Any]) -> None:
    # The scenario's ``cgsv``, one evaluator over the run as the world builds it:
    # round 1 aggregates by data size, later rounds by the reputations it keeps
    # (r ← α r + (1 − α) ψ, clamped at 1e-3, normalised), as the authors' loop does.
    evaluator = create_evaluator("cgsv", alpha=CGSV_ALPHA)
    clients = tuple(f"owner-{i}" for i in range(len(case["sizes"])))
    for iteration in case["iterations"]:
        updates = tuple(np.asarray(u) for u in iteration["updates"])
        data = RoundData(
            num_clients=len(updates),
            updates=updates,
            weights=tuple(case["sizes"]),
            clients=clients,
        )

        got = evaluator.evaluate(data, rng=Replay([])).scores

        np.testing.assert_allclose(got, iteration["phis"], RTOL, ATOL)


@pytest.mark.parametrize("case", CGSV["cosine"], ids=_ids(CGSV["cosine"]))
def test_cosine_matches_scikit_learn(case: dict[str, Any]) -> None:
    updates = tuple(np.asarray(u) for u in case["updates"])
    weights = None if case["weights"] is None else tuple(float(w) for w in case["weights"])
    data = RoundData(num_clients=len(updates), updates=updates, weights=weights)

    got = create_evaluator("cosine").evaluate(data, rng=Replay([])).scores

    np.testing.assert_allclose(got, case["cosine"], RTOL, ATOL)
