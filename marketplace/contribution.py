"""Contribution evaluation: how much did each client's update help this round?

Every evaluator here is generic over a *utility function*
``Utility = Callable[[frozenset[int]], float]`` on clients ``0..n-1``. The
simulation plugs in "minus the validation cross-entropy of the model
aggregated from this coalition's updates" (see :func:`coalition_utility` and
docs/contribution.md for why not accuracy); the tests plug in
hand-solvable cooperative games. Keeping the evaluators blind to models keeps
``marketplace/`` free of torch and lets every number be checked by hand.

Evaluators (registry :data:`EVALUATORS`, names as used in scenario files):

``loo``
    Leave-one-out, ``U(N) - U(N \\ {i})``: ``n + 1`` utility calls, but blind to
    redundancy (two identical clients both score ~0), which is why the
    Shapley family below exists.
``exact_shapley``
    The Shapley value (Shapley 1953) by enumerating all ``2^n`` coalitions;
    the reference for small cohorts.
``tmc_shapley``
    Truncated Monte-Carlo permutation sampling (Ghorbani & Zou 2019, "Data
    Shapley", Algorithm 1): stop scanning a permutation once the prefix is
    within a tolerance of ``U(N)``.
``gtg_shapley``
    GTG-Shapley (Liu et al. 2022, "GTG-Shapley: Efficient and Accurate
    Participant Contribution Evaluation in Federated Learning"): coalition
    models are rebuilt from the round's updates instead of retrained, sampling
    is *guided* (each sweep puts every client once in first position), with
    within-round truncation (skip the tail of a permutation whose remaining
    gain is small) and between-round truncation (skip the whole round when
    ``|U(N) - U(∅)|`` is below a threshold).
``cosine``
    Cosine similarity of each flattened update to the (weighted) aggregate, a
    utility-free proxy used by many FL incentive schemes; zero utility calls.
``cgsv``
    Cosine-gradient Shapley value (Xu et al. 2021, "Gradient-Driven Rewards to
    Guarantee Fairness in Collaborative Machine Learning", NeurIPS): each update
    is normalised to unit length, the aggregate is their (reputation-weighted)
    sum, and a client's value is the cosine of its update with that aggregate,
    which the paper shows approximates its Shapley value for a cosine utility.
    The registry entry keeps each client's reputation across the rounds of a run
    (data-size weights in the first round), as the authors' training loop does.
    No validation set and zero utility calls; judged by rank agreement only.

Per-round accumulation (:func:`accumulate_rounds`) follows FedSV (Wang et al.
2020, "A Principled Approach to Data Valuation for Federated Learning"): the
Shapley value of the federation is the sum over rounds of round-wise values,
and only the participants of a round receive that round's value.

Utility calls are counted as *distinct coalitions evaluated*: every evaluator
memoizes the utility, because in FL each call means aggregating a model and
running validation, which dominates the cost.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from marketplace.registry_base import Registry

__all__ = [
    "CGSV",
    "CGSV_ALPHA",
    "EVALUATORS",
    "GTG_BETWEEN_ROUND_TOLERANCE",
    "GTG_WITHIN_ROUND_TOLERANCE",
    "ContributionEvaluator",
    "ContributionResult",
    "CosineSimilarity",
    "ExactShapley",
    "GTGShapley",
    "LeaveOneOut",
    "MemoizedUtility",
    "RoundData",
    "TMCShapley",
    "Utility",
    "accumulate_rounds",
    "cgsv",
    "coalition_utility",
    "cosine_similarity",
    "create_evaluator",
    "exact_shapley",
    "gtg_shapley",
    "leave_one_out",
    "monte_carlo_shapley",
    "reference_shapley",
    "se_target",
    "tmc_shapley",
]

logger = logging.getLogger("fedmarket.incentives")

Utility = Callable[[frozenset[int]], float]
"""Value of a coalition of client indices, e.g. minus the validation loss of its aggregate."""


#: Above this many players exact enumeration (2^n coalitions) is refused.
MAX_EXACT_PLAYERS = 20

#: The reference contribution is exact Shapley up to this many clients of a round
#: (``contribution.exact_max_clients``' default): 4,096 coalitions at 12, measured at
#: about 20 s per round on recorded quickstart rounds (docs/contribution.md).
REFERENCE_EXACT_MAX = 12

#: Monte Carlo reference: stop once every client's standard error is at most this
#: share of the mean absolute per-client share of the round's gain, ``|U(N) − U(∅)| / n``.
REFERENCE_SE_TOLERANCE = 0.05
#: ... but never before this many permutations (so the standard error itself is
#: estimated from enough draws) ...
REFERENCE_MIN_PERMUTATIONS = 100
#: ... and never after this many (the result's ``converged`` is then ``False`` and its
#: standard errors say how far the target was missed). A scenario may change it
#: (``contribution.reference_max_permutations``).
REFERENCE_MAX_PERMUTATIONS = 2000


def se_target(gain: float, num_clients: int, tolerance: float = REFERENCE_SE_TOLERANCE) -> float:
    """The standard error every client's reference value must reach: ``tolerance`` of
    the mean per-client share of the round's gain ``U(N) − U(∅)``. One formula for the
    estimator's stopping rule and for anyone re-checking it from recorded values."""
    return tolerance * abs(gain) / num_clients


#: GTG-Shapley's within-round truncation, as a share of the round's gain ``|U(N) − U(∅)|``.
#: The authors' code truncates at an absolute 0.001 of accuracy, about a percent of a
#: round's gain. Measured on recorded non-IID rounds at N = 10 (``benchmarks/shapley.py
#: --rounds 5``, docs/contribution.md): 5 % saves about 10 % of the calls, but its bias,
#: which unlike the sampling noise does not average out over the rounds the market
#: pays on, raises the error of the values summed over 5 rounds (10 sweeps: 0.18
#: relative L1 at 5 %, 0.13 untruncated); per round 1 % is within noise of no
#: truncation (0.29 vs 0.29; 0.32 at 5 %).
GTG_WITHIN_ROUND_TOLERANCE = 0.01

#: GTG's between-round truncation: a round whose gain ``|U(N) − U(∅)|`` is at most
#: this gets zeros (the authors' ``round_trunc_threshold``).
GTG_BETWEEN_ROUND_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ContributionResult:
    """Scores of clients ``0..n-1`` plus what computing them cost.

    ``utility_calls`` counts distinct coalitions whose utility was evaluated
    (the expensive part in FL); ``seconds`` is wall time, for benchmarks only
    and never written to the ledger.
    """

    scores: tuple[float, ...]
    utility_calls: int
    seconds: float
    method: str
    cache_repeats: int = 0
    """Utility look-ups answered from the cache (a coalition asked for again)."""
    standard_errors: tuple[float, ...] | None = None
    """Per-client standard error of a sampled estimate (``monte_carlo_shapley``); ``None``
    for exact values and for estimators that report none."""
    se_target: float | None = None
    """The standard error every client's estimate had to reach (:func:`se_target`);
    ``None`` for estimators without a precision target."""
    converged: bool | None = None
    """Whether every standard error met ``se_target`` before the permutation cap;
    ``None`` for estimators without a precision target. The estimator only reports
    it: what a miss means (stop the run, or record it) is its caller's decision."""
    permutations: int | None = None
    """How many permutations a sampling estimator drew (TMC, GTG, the Monte Carlo
    reference; summed over rounds by :func:`accumulate_rounds`); ``None`` for
    estimators that draw none. A precision miss is reported with the permutations
    actually drawn, not the configured cap."""

    def by_account(self, accounts: Sequence[str]) -> dict[str, float]:
        """Scores keyed by account id (``accounts[i]`` is client ``i``), for mechanisms."""
        if len(accounts) != len(self.scores):
            raise ValueError(f"{len(accounts)} accounts for {len(self.scores)} scores")
        return dict(zip(accounts, self.scores, strict=True))


class MemoizedUtility:
    """Wraps a utility, caching by coalition and counting distinct evaluations.

    Wrapping a ``MemoizedUtility`` again shares its cache: a round builds one
    (``simulation/world/stages/scoring.py``) and every evaluator that wraps it, e.g.
    the scenario's estimator and the FedAvg reference, evaluates a coalition once
    in all. Each wrapper still counts its own ``calls`` (distinct coalitions *it*
    asked for: what the estimator would cost alone) and ``repeats``; the shared
    ``evaluations`` counts the utility's real invocations, in one place.
    """

    num_clients: int

    def __init__(self, utility: Utility, num_clients: int) -> None:
        _check_num_clients(num_clients)
        if isinstance(utility, MemoizedUtility):
            if utility.num_clients != num_clients:
                raise ValueError(
                    f"shared utility has {utility.num_clients} clients, not {num_clients}"
                )
            self._utility: Utility = utility._utility
            self._cache: dict[frozenset[int], float] = utility._cache
        else:
            self._utility = utility
            self._cache = {}
        self.num_clients = num_clients
        self._asked: set[frozenset[int]] = set()
        self.repeats = 0

    @property
    def calls(self) -> int:
        """Distinct coalitions this wrapper asked for."""
        return len(self._asked)

    @property
    def evaluations(self) -> int:
        """Distinct coalitions evaluated in the shared cache (by any wrapper)."""
        return len(self._cache)

    def __call__(self, coalition: frozenset[int]) -> float:
        if coalition in self._asked:
            self.repeats += 1
            return self._cache[coalition]
        value = self._cache.get(coalition)
        if value is None:
            value = self._evaluate(coalition)
        self._asked.add(coalition)
        return value

    def _evaluate(self, coalition: frozenset[int]) -> float:
        for member in coalition:
            if not 0 <= member < self.num_clients:
                raise ValueError(
                    f"coalition member {member} outside clients 0..{self.num_clients - 1}"
                )
        value = float(self._utility(coalition))
        if not math.isfinite(value):
            raise ValueError(f"utility of coalition {sorted(coalition)} is {value}")
        self._cache[coalition] = value
        return value


def _check_num_clients(num_clients: int) -> None:
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")


def _result(
    scores: Sequence[float] | NDArray[np.float64],
    memo: MemoizedUtility | None,
    started: float,
    method: str,
    permutations: int | None = None,
) -> ContributionResult:
    return ContributionResult(
        scores=tuple(float(s) for s in scores),
        utility_calls=0 if memo is None else memo.calls,
        seconds=time.perf_counter() - started,
        method=method,
        cache_repeats=0 if memo is None else memo.repeats,
        permutations=permutations,
    )


# --------------------------------------------------------------------------- #
# Evaluators as functions
# --------------------------------------------------------------------------- #


def leave_one_out(utility: Utility, num_clients: int) -> ContributionResult:
    """``φ_i = U(N) - U(N \\ {i})`` with ``n + 1`` utility calls.

    Cheap, but it undervalues redundant clients: if two clients hold the same
    data, removing either one costs nothing, so both score ~0.
    """
    started = time.perf_counter()
    memo = MemoizedUtility(utility, num_clients)
    everyone = frozenset(range(num_clients))
    full = memo(everyone)
    scores = [full - memo(everyone - {i}) for i in range(num_clients)]
    return _result(scores, memo, started, "loo")


def exact_shapley(utility: Utility, num_clients: int) -> ContributionResult:
    """The Shapley value by full enumeration of the ``2^n`` coalitions.

    ``φ_i = Σ_{S ⊆ N\\{i}} |S|! (n-|S|-1)! / n! · (U(S ∪ {i}) - U(S))``
    (Shapley 1953). The only evaluator that satisfies efficiency, symmetry,
    null player and additivity exactly, hence the reference for the others.
    """
    if num_clients > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"exact Shapley enumerates 2^n coalitions; n={num_clients} exceeds "
            f"{MAX_EXACT_PLAYERS}, use tmc_shapley or gtg_shapley"
        )
    started = time.perf_counter()
    memo = MemoizedUtility(utility, num_clients)
    n = num_clients
    values = np.empty(1 << n, dtype=np.float64)
    for mask in range(1 << n):
        values[mask] = memo(frozenset(i for i in range(n) if mask >> i & 1))
    weight = [
        math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n) for size in range(n)
    ]
    scores = np.zeros(n, dtype=np.float64)
    for mask in range(1 << n):
        size = mask.bit_count()
        for i in range(n):
            if not mask >> i & 1:
                scores[i] += weight[size] * (values[mask | 1 << i] - values[mask])
    return _result(scores, memo, started, "exact_shapley")


def _mean_relative_change(new: NDArray[np.float64], old: NDArray[np.float64]) -> float:
    scale = float(np.mean(np.abs(new)))
    if scale == 0.0:
        return 0.0 if np.allclose(new, old) else math.inf
    return float(np.mean(np.abs(new - old))) / scale


@dataclass(frozen=True)
class _PermutationSetup:
    """What every permutation sampler starts from (TMC, GTG, the Monte Carlo reference)."""

    memo: MemoizedUtility
    empty_value: float
    """``U(∅)``."""
    full_value: float
    """``U(N)``."""
    started: float


def _permutation_setup(
    utility: Utility, num_clients: int, **at_least_one: int | None
) -> _PermutationSetup:
    """Check the sampler's counts (each given one ``>= 1``), then evaluate ``U(∅)`` and ``U(N)``."""
    for name, value in at_least_one.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    started = time.perf_counter()
    memo = MemoizedUtility(utility, num_clients)
    return _PermutationSetup(memo, memo(frozenset()), memo(frozenset(range(num_clients))), started)


def _truncated_walk(
    order: Sequence[int] | NDArray[np.integer],
    memo: MemoizedUtility,
    totals: NDArray[np.float64],
    empty_value: float,
    full_value: float,
    threshold: float,
) -> None:
    """Add one permutation's marginal contributions to ``totals`` (TMC and GTG).

    The scan stops once the prefix's utility is within ``threshold`` of
    ``U(N)``: the remaining clients' marginals are taken as 0 (truncation).
    """
    previous = empty_value
    prefix: set[int] = set()
    for client in order:
        if abs(full_value - previous) <= threshold:
            break
        prefix.add(int(client))
        value = memo(frozenset(prefix))
        totals[client] += value - previous
        previous = value


def tmc_shapley(
    utility: Utility,
    num_clients: int,
    *,
    rng: np.random.Generator,
    max_permutations: int = 500,
    truncation_tolerance: float = 0.05,
    convergence_tolerance: float = 0.05,
) -> ContributionResult:
    """Truncated Monte-Carlo Shapley (Ghorbani & Zou 2019, Algorithm 1).

    Samples uniform random permutations; scanning a permutation stops as soon
    as the prefix's utility is within ``truncation_tolerance · |U(N) - U(∅)|``
    of ``U(N)`` (the remaining marginals are then taken as 0, the paper's
    "performance tolerance", here relative to the total gain so it is scale
    free). Every ``n`` permutations the estimate is compared with the previous
    checkpoint; sampling stops when the mean relative change is below
    ``convergence_tolerance`` or after ``max_permutations``. The defaults (5 %
    and 5 %) are the measured knee of the error-versus-calls curve on recorded
    FL rounds (``benchmarks/shapley.py``, docs/contribution.md); at 1 % and 1 %
    TMC never converged and evaluated every coalition, costing more than exact.
    """
    setup = _permutation_setup(utility, num_clients, max_permutations=max_permutations)
    memo, empty_value, full_value = setup.memo, setup.empty_value, setup.full_value
    n = num_clients
    threshold = truncation_tolerance * abs(full_value - empty_value)
    totals = np.zeros(n, dtype=np.float64)
    checkpoint: NDArray[np.float64] | None = None
    permutations = 0
    while permutations < max_permutations:
        order = rng.permutation(n)
        _truncated_walk(order, memo, totals, empty_value, full_value, threshold)
        permutations += 1
        if permutations % n == 0:
            estimate = totals / permutations
            if (
                checkpoint is not None
                and _mean_relative_change(estimate, checkpoint) < convergence_tolerance
            ):
                break
            checkpoint = estimate
    logger.debug("tmc_shapley: %d permutations, %d utility calls", permutations, memo.calls)
    return _result(totals / permutations, memo, setup.started, "tmc_shapley", permutations)


def gtg_shapley(
    utility: Utility,
    num_clients: int,
    *,
    rng: np.random.Generator,
    max_sweeps: int = 10,
    within_round_tolerance: float = GTG_WITHIN_ROUND_TOLERANCE,
    between_round_tolerance: float = GTG_BETWEEN_ROUND_TOLERANCE,
    convergence_tolerance: float = 0.05,
    min_permutations: int | None = None,
) -> ContributionResult:
    """GTG-Shapley for one FL round (Liu et al. 2022, Algorithm 1).

    ``U(∅)`` is the previous global model and ``U(N)`` the new aggregate; other
    coalitions are models *rebuilt* from the round's updates (no retraining),
    which is what the utility is expected to do (:func:`coalition_utility`).

    * Between-round truncation: if ``|U(N) - U(∅)| <= between_round_tolerance``
      (absolute, utility units) the round taught nothing measurable and every
      client gets 0 after only two utility calls.
    * Guided sampling: one *sweep* draws ``n`` permutations, the ``k``-th with
      client ``k`` in first position and the rest shuffled, so every client's
      "alone" marginal, the largest and most variable one, is sampled evenly.
    * Within-round truncation: a permutation stops once the prefix is within
      ``within_round_tolerance · |U(N) - U(∅)|`` of ``U(N)``; the remaining
      clients get marginal 0 in that permutation. Default 1 %
      (:data:`GTG_WITHIN_ROUND_TOLERANCE`, why there).
    * Convergence: at least ``min_permutations`` permutations (default
      ``max(30, n)``, the authors' reference code's ``converge_min``), rounded up
      to whole sweeps; after that, stop when a sweep changes the estimate by a
      mean relative change below ``convergence_tolerance`` (the reference's
      ``converge_criteria`` 0.05), or after ``max_sweeps``.
    """
    setup = _permutation_setup(
        utility, num_clients, max_sweeps=max_sweeps, min_permutations=min_permutations
    )
    memo, empty_value, full_value = setup.memo, setup.empty_value, setup.full_value
    n = num_clients
    total_gain = full_value - empty_value
    if abs(total_gain) <= between_round_tolerance:
        logger.debug("gtg_shapley: between-round truncation, |gain|=%g", abs(total_gain))
        return _result(np.zeros(n), memo, setup.started, "gtg_shapley", 0)
    threshold = within_round_tolerance * abs(total_gain)
    minimum = max(30, n) if min_permutations is None else min_permutations
    min_sweeps = min(max_sweeps, -(-minimum // n))
    totals = np.zeros(n, dtype=np.float64)
    permutations = 0
    checkpoint: NDArray[np.float64] | None = None
    for sweep in range(max_sweeps):
        for first in range(n):
            rest = [c for c in range(n) if c != first]
            order = [first, *(rest[j] for j in rng.permutation(n - 1))]
            _truncated_walk(order, memo, totals, empty_value, full_value, threshold)
            permutations += 1
        estimate = totals / permutations
        if (
            sweep + 1 >= min_sweeps
            and checkpoint is not None
            and _mean_relative_change(estimate, checkpoint) < convergence_tolerance
        ):
            break
        checkpoint = estimate
    logger.debug("gtg_shapley: %d permutations, %d utility calls", permutations, memo.calls)
    return _result(totals / permutations, memo, setup.started, "gtg_shapley", permutations)


def monte_carlo_shapley(
    utility: Utility,
    num_clients: int,
    *,
    rng: np.random.Generator,
    se_tolerance: float = REFERENCE_SE_TOLERANCE,
    min_permutations: int = REFERENCE_MIN_PERMUTATIONS,
    max_permutations: int = REFERENCE_MAX_PERMUTATIONS,
) -> ContributionResult:
    """Plain permutation sampling with standard errors (Castro, Gómez & Tejada 2009).

    Each uniform random permutation contributes every client's marginal
    ``U(P ∪ {i}) − U(P)``, scanned to the end: no truncation and no guided
    order, so the estimate is unbiased and its standard error
    ``s_i / √T`` (``s_i`` the sample standard deviation of client ``i``'s
    marginals over ``T`` permutations) is honest. This is the reference above
    the exact size, deliberately *not* TMC or GTG, the estimators it judges.

    Stopping rule: permutations are drawn in batches of ``n`` until, after at
    least ``min_permutations``, every client's standard error is at most
    ``se_tolerance · |U(N) − U(∅)| / n``, or ``max_permutations`` are drawn.
    The result carries the target (``se_target``), whether it was met
    (``converged``) and the permutations drawn (``permutations``); at the cap
    ``converged`` is ``False`` and ``standard_errors`` say by how much it was missed.
    Nothing is logged: the caller decides what a miss means (the simulation's
    ``contribution.on_imprecise``). A round with ``U(N) = U(∅)`` needs the SE to be 0.
    """
    if not 2 <= min_permutations <= max_permutations:
        raise ValueError(
            f"need 2 <= min_permutations <= max_permutations, got {min_permutations}, "
            f"{max_permutations}"
        )
    if se_tolerance < 0:
        raise ValueError(f"se_tolerance must be >= 0, got {se_tolerance}")
    setup = _permutation_setup(utility, num_clients)
    memo, empty_value = setup.memo, setup.empty_value
    n = num_clients
    target = se_target(setup.full_value - empty_value, n, se_tolerance)
    marginals: list[NDArray[np.float64]] = []
    errors = np.full(n, math.inf)
    while len(marginals) < max_permutations:
        for _ in range(min(n, max_permutations - len(marginals))):
            row = np.zeros(n, dtype=np.float64)
            previous, prefix = empty_value, frozenset[int]()
            for client in rng.permutation(n):
                prefix = prefix | {int(client)}
                value = memo(prefix)
                row[client] = value - previous
                previous = value
            marginals.append(row)
        if len(marginals) >= min_permutations:
            errors = np.std(np.stack(marginals), axis=0, ddof=1) / math.sqrt(len(marginals))
            if float(errors.max()) <= target:
                break
    result = _result(
        np.mean(np.stack(marginals), axis=0),
        memo,
        setup.started,
        "monte_carlo_shapley",
        len(marginals),
    )
    return dataclasses.replace(
        result,
        standard_errors=tuple(float(e) for e in errors),
        se_target=target,
        converged=bool(float(errors.max()) <= target),
    )


def reference_shapley(
    utility: Utility,
    num_clients: int,
    *,
    rng: np.random.Generator,
    exact_max: int = REFERENCE_EXACT_MAX,
    max_permutations: int = REFERENCE_MAX_PERMUTATIONS,
) -> ContributionResult:
    """The ground-truth contribution: exact Shapley up to ``exact_max`` clients,
    :func:`monte_carlo_shapley` (with standard errors, at most ``max_permutations``)
    above, never TMC or GTG."""
    if num_clients <= exact_max:
        return exact_shapley(utility, num_clients)
    return monte_carlo_shapley(utility, num_clients, rng=rng, max_permutations=max_permutations)


def cosine_similarity(
    updates: Sequence[NDArray[np.floating]],
    weights: Sequence[float] | None = None,
) -> ContributionResult:
    """Cosine of each flattened update with the weighted mean update.

    A utility-free proxy: an update pointing where the federation went scores
    near 1, a sign-flipped one near -1, a zero (free-rider) update 0. Weights
    default to uniform; pass ``num_examples`` to mirror FedAvg.
    """
    started = time.perf_counter()
    matrix = _flat_updates(updates, "cosine similarity")
    w = np.ones(len(matrix)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(matrix),) or np.any(w < 0) or float(w.sum()) <= 0.0:
        raise ValueError("weights must be one non-negative number per update, not all zero")
    return _result(_cosines(matrix, (w / w.sum()) @ matrix), None, started, "cosine")


def _flat_updates(updates: Sequence[NDArray[np.floating]], what: str) -> NDArray[np.float64]:
    """The updates as rows of one float64 matrix; ``ValueError`` if none or sizes differ."""
    if not updates:
        raise ValueError(f"{what} needs at least one update")
    flat = [np.asarray(u, dtype=np.float64).ravel() for u in updates]
    size = flat[0].size
    for i, vector in enumerate(flat):
        if vector.size != size:
            raise ValueError(f"update {i} has {vector.size} parameters, update 0 has {size}")
    return np.stack(flat)


def _cosines(matrix: NDArray[np.float64], direction: NDArray[np.float64]) -> list[float]:
    """Cosine of each row with ``direction``; 0 where either has no direction."""
    direction_norm = float(np.linalg.norm(direction))
    scores = []
    for vector in matrix:
        denominator = float(np.linalg.norm(vector)) * direction_norm
        scores.append(0.0 if denominator == 0.0 else float(vector @ direction) / denominator)
    return scores


def cgsv(
    updates: Sequence[NDArray[np.floating]],
    reputations: Sequence[float] | None = None,
) -> ContributionResult:
    """Cosine-gradient Shapley values of one round (Xu et al. 2021, Eq. 3 and Algorithm 1).

    ``ψ_i = cos(u_i, u_N)`` with ``u_N = Σ_j r_j u_j / ‖u_j‖``: every update is
    normalised (the paper's ``Γ``-normalisation with a common ``Γ``, which the
    cosine does not see), so a client cannot buy influence with a large update.
    ``reputations`` ``r_j`` default to uniform (the authors' first round when every
    client holds as much data); the registry entry :class:`CGSV` keeps the paper's
    reputations across rounds and passes them. A zero update scores 0.
    """
    started = time.perf_counter()
    matrix = _flat_updates(updates, "cgsv")
    r = np.ones(len(matrix)) if reputations is None else np.asarray(reputations, dtype=np.float64)
    if r.shape != (len(matrix),) or np.any(r < 0):
        raise ValueError("reputations must be one non-negative number per update")
    norms = np.linalg.norm(matrix, axis=1)
    units = matrix / np.where(norms > 0.0, norms, 1.0)[:, None]
    return _result(_cosines(matrix, r @ units), None, started, "cgsv")


def coalition_utility(
    global_weights: NDArray[np.floating],
    updates: Sequence[NDArray[np.floating]],
    num_examples: Sequence[int],
    evaluate: Callable[[NDArray[np.float64]], float],
) -> Utility:
    """Utility that rebuilds a coalition's model from the round's updates (GTG-Shapley).

    ``U(S) = evaluate(global + Σ_{i∈S} n_i·Δ_i / Σ_{i∈S} n_i)`` (FedAvg over
    ``S``), and ``U(∅) = evaluate(global)``: the previous global model, as in
    Liu et al. 2022, so no coalition is ever retrained.
    """
    base = np.asarray(global_weights, dtype=np.float64).ravel()
    deltas = [np.asarray(u, dtype=np.float64).ravel() for u in updates]
    counts = [int(c) for c in num_examples]
    if len(deltas) != len(counts):
        raise ValueError(f"{len(deltas)} updates but {len(counts)} example counts")
    for i, delta in enumerate(deltas):
        if delta.size != base.size:
            raise ValueError(f"update {i} has {delta.size} parameters, model has {base.size}")

    def utility(coalition: frozenset[int]) -> float:
        members = sorted(coalition)
        total = sum(counts[i] for i in members)
        if not members or total <= 0:
            return float(evaluate(base))
        step = sum((counts[i] / total) * deltas[i] for i in members)
        return float(evaluate(base + step))

    return utility


# --------------------------------------------------------------------------- #
# Evaluators as registry entries
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class RoundData:
    """What an evaluator may look at for one round.

    Shapley-family evaluators need ``utility``; ``cosine`` needs ``updates``
    (flattened or not) and optionally ``weights``; ``cgsv`` needs ``updates``,
    ``weights`` (data sizes) and ``clients``. Missing inputs fail loudly.
    """

    num_clients: int
    utility: Utility | None = None
    updates: tuple[NDArray[np.floating], ...] | None = None
    weights: tuple[float, ...] | None = None
    clients: tuple[str, ...] | None = None
    """Who clients ``0..n-1`` are, stably across rounds (the world passes accounts): an
    evaluator that keeps per-client state between rounds (``cgsv``) needs it."""

    def require_utility(self, method: str) -> Utility:
        """The utility, or a ``ValueError`` naming the evaluator that needed it."""
        if self.utility is None:
            raise ValueError(f"evaluator {method!r} needs RoundData.utility")
        return self.utility

    def require_updates(self, method: str) -> tuple[NDArray[np.floating], ...]:
        """One update per client, or a ``ValueError`` naming the evaluator that needed them."""
        if self.updates is None:
            raise ValueError(f"evaluator {method!r} needs RoundData.updates")
        if len(self.updates) != self.num_clients:
            raise ValueError(f"{len(self.updates)} updates for num_clients={self.num_clients}")
        return self.updates

    def require_clients(self, method: str) -> tuple[str, ...]:
        """One distinct identity per client, or a ``ValueError`` naming the evaluator."""
        if self.clients is None:
            raise ValueError(f"evaluator {method!r} needs RoundData.clients")
        if len(self.clients) != self.num_clients or len(set(self.clients)) != self.num_clients:
            raise ValueError(
                f"RoundData.clients must name {self.num_clients} distinct clients, "
                f"got {list(self.clients)}"
            )
        return self.clients

    def require_weights(self, method: str) -> tuple[float, ...]:
        """One weight (data size) per client, or a ``ValueError`` naming the evaluator."""
        if self.weights is None or len(self.weights) != self.num_clients:
            raise ValueError(f"evaluator {method!r} needs one RoundData.weights per client")
        return self.weights


class ContributionEvaluator(ABC):
    """One contribution-evaluation method, constructed with its parameters."""

    name: ClassVar[str]

    @abstractmethod
    def evaluate(self, data: RoundData, *, rng: np.random.Generator) -> ContributionResult:
        """Scores for clients ``0..data.num_clients-1``; ``rng`` is the only randomness."""


class LeaveOneOut(ContributionEvaluator):
    """Registry entry ``loo``: see :func:`leave_one_out`."""

    name = "loo"

    def evaluate(self, data: RoundData, *, rng: np.random.Generator) -> ContributionResult:
        return leave_one_out(data.require_utility(self.name), data.num_clients)


class ExactShapley(ContributionEvaluator):
    """Registry entry ``exact_shapley``: see :func:`exact_shapley`."""

    name = "exact_shapley"

    def evaluate(self, data: RoundData, *, rng: np.random.Generator) -> ContributionResult:
        return exact_shapley(data.require_utility(self.name), data.num_clients)


class TMCShapley(ContributionEvaluator):
    """Registry entry ``tmc_shapley``: see :func:`tmc_shapley`."""

    name = "tmc_shapley"

    def __init__(
        self,
        *,
        max_permutations: int = 500,
        truncation_tolerance: float = 0.05,
        convergence_tolerance: float = 0.05,
    ) -> None:
        self.max_permutations = max_permutations
        self.truncation_tolerance = truncation_tolerance
        self.convergence_tolerance = convergence_tolerance

    def evaluate(self, data: RoundData, *, rng: np.random.Generator) -> ContributionResult:
        return tmc_shapley(
            data.require_utility(self.name),
            data.num_clients,
            rng=rng,
            max_permutations=self.max_permutations,
            truncation_tolerance=self.truncation_tolerance,
            convergence_tolerance=self.convergence_tolerance,
        )


class GTGShapley(ContributionEvaluator):
    """Registry entry ``gtg_shapley``: see :func:`gtg_shapley`."""

    name = "gtg_shapley"

    def __init__(
        self,
        *,
        max_sweeps: int = 10,
        within_round_tolerance: float = GTG_WITHIN_ROUND_TOLERANCE,
        between_round_tolerance: float = GTG_BETWEEN_ROUND_TOLERANCE,
        convergence_tolerance: float = 0.05,
        min_permutations: int | None = None,
    ) -> None:
        self.max_sweeps = max_sweeps
        self.min_permutations = min_permutations
        self.within_round_tolerance = within_round_tolerance
        self.between_round_tolerance = between_round_tolerance
        self.convergence_tolerance = convergence_tolerance

    def evaluate(self, data: RoundData, *, rng: np.random.Generator) -> ContributionResult:
        return gtg_shapley(
            data.require_utility(self.name),
            data.num_clients,
            rng=rng,
            max_sweeps=self.max_sweeps,
            within_round_tolerance=self.within_round_tolerance,
            between_round_tolerance=self.between_round_tolerance,
            convergence_tolerance=self.convergence_tolerance,
            min_permutations=self.min_permutations,
        )


class CosineSimilarity(ContributionEvaluator):
    """Registry entry ``cosine``: see :func:`cosine_similarity`."""

    name = "cosine"

    def evaluate(self, data: RoundData, *, rng: np.random.Generator) -> ContributionResult:
        return cosine_similarity(data.require_updates(self.name), data.weights)


#: CGSV's reputation moving average ``r ← α r + (1 − α) ψ``: the authors' α
#: (``utils/arguments.py`` of their code, every dataset).
CGSV_ALPHA = 0.95
#: The floor the authors clamp a reputation at before normalising (``main.py`` l. 266).
CGSV_REPUTATION_FLOOR = 1e-3


class CGSV(ContributionEvaluator):
    """Registry entry ``cgsv``: Xu et al. 2021's scores across the rounds of a run.

    One instance lives for a run (``simulation/world/setup.py``) and keeps each
    client's reputation, as the authors' training loop does (``main.py`` l. 246–267 of
    their code, checked in ``tests/incentives/test_reference_estimators.py``): the
    first round aggregates the normalised updates with data-size weights
    (``RoundData.weights``), later rounds with the reputations; each client scores
    the round's :func:`cgsv` ψ; then ``m = max(α r + (1 − α) ψ, 1e-3)`` for the
    round's clients and the reputations are normalised to sum 1.

    The paper has every agent in every round; under client sampling the rules are:

    * a client not in a round keeps exactly its reputation. The round's clients
      share the mass the absent ones do not hold, ``r_i = (1 − Σ_absent r) ·
      m_i / Σ_round m`` (so the total stays 1 and mass moves only between clients
      that share a round). With every client in every round ``Σ_absent r = 0`` and
      this is the authors' ``m / Σ m``. Normalising all reputations instead would
      shrink every absent client each round (about 1.5× a round with 10 of 100
      sampled), making the weights a matter of recency rather than quality;
    * a client never seen has reputation 0 (the authors' initial value): it is
      scored, weighs nothing in that round's aggregate, and takes its share of the
      round's mass from the clients it shares the round with (as the authors'
      normalisation over a grown population would);
    * a round in which no client has a reputation yet aggregates by data size, like
      the first. In the first round of a run its clients share the whole mass 1;
      in a later one the absent clients hold all of it (``Σ_absent r = 1``), so the
      ``k`` newcomers enter with the mean rated client's mass: the ``n`` rated
      clients are scaled once by ``n / (n + k)`` (the only case in which an absent
      client's reputation moves), and the newcomers share the rest as above;
    * the floor ``1e-3`` applies to ``m`` before normalising, as in the authors'
      code, so it bounds a client's weight relative to the others in its round
      (a normalised reputation can be below ``1e-3``).
    """

    name = "cgsv"

    def __init__(self, *, alpha: float = CGSV_ALPHA) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self._reputation: dict[str, float] = {}

    @property
    def reputations(self) -> dict[str, float]:
        """The reputation of every rated client, by client (a copy)."""
        return dict(self._reputation)

    def evaluate(self, data: RoundData, *, rng: np.random.Generator) -> ContributionResult:
        updates = data.require_updates(self.name)
        clients = data.require_clients(self.name)
        known = [self._reputation.get(c, 0.0) for c in clients]
        weights = known if sum(known) > 0.0 else list(data.require_weights(self.name))
        result = cgsv(updates, weights)
        self._move(clients, known, result.scores)
        return result

    def _move(self, clients: Sequence[str], known: Sequence[float], psi: Sequence[float]) -> None:
        """Move the round's reputations toward ψ within the mass the absent do not hold."""
        present = set(clients)
        absent = sum(r for c, r in self._reputation.items() if c not in present)
        held = sum(known)
        if held == 0.0 and absent > 0.0:
            absent = self._admit(len(clients))
        # 1 − absent equals ``held`` up to rounding (the total is 1); it is used
        # because it keeps the total at 1 and is exactly 1 at full participation.
        share = 1.0 - absent
        if share <= 0.0:
            share = held  # rounding: the round holds under ~1e-16 of the mass
        moved = [
            max(self.alpha * before + (1.0 - self.alpha) * score, CGSV_REPUTATION_FLOOR)
            for before, score in zip(known, psi, strict=True)
        ]
        total = sum(moved)
        for client, m in zip(clients, moved, strict=True):
            # ``max`` keeps a rated client's reputation positive should it underflow.
            self._reputation[client] = max(share * m / total, sys.float_info.min)

    def _admit(self, newcomers: int) -> float:
        """Make room for a round of only newcomers while absent clients hold all the mass.

        Keeping the absent clients' mass exactly would leave the newcomers nothing
        to share, and a run whose first clients never return would weigh by data size
        forever. Instead the newcomers enter with the mean rated client's mass: the
        ``n`` rated clients are scaled once by ``n / (n + k)`` for ``k`` newcomers.
        Returns the absent clients' mass after the scaling.
        """
        keep = len(self._reputation) / (len(self._reputation) + newcomers)
        self._reputation = {c: r * keep for c, r in self._reputation.items()}
        return sum(self._reputation.values())


EVALUATORS: Registry[type[ContributionEvaluator]] = Registry("contribution evaluator")
for _cls in (LeaveOneOut, ExactShapley, TMCShapley, GTGShapley, CosineSimilarity, CGSV):
    EVALUATORS.register(_cls.name, _cls)


def create_evaluator(name: str, **params: float | int) -> ContributionEvaluator:
    """Build the evaluator a scenario names, e.g. ``create_evaluator("gtg_shapley", max_sweeps=3)``.

    Unknown names raise ``ValueError`` listing the valid ones; unknown
    parameters raise ``TypeError`` from the constructor.
    """
    return EVALUATORS.get(name)(**params)


def accumulate_rounds(
    evaluator: ContributionEvaluator,
    rounds: Sequence[tuple[Sequence[int], RoundData]],
    num_clients: int,
    *,
    rng: np.random.Generator,
) -> ContributionResult:
    """FedSV accumulation (Wang et al. 2020): sum round-wise values over rounds.

    Each round is ``(participants, data)`` where ``participants[j]`` is the
    global client id of the round's local client ``j`` (``data`` is indexed
    locally). Only a round's participants receive that round's value, so a
    client absent from a round is neither rewarded nor penalised for it.
    """
    _check_num_clients(num_clients)
    started = time.perf_counter()
    scores = np.zeros(num_clients, dtype=np.float64)
    calls = 0
    drawn: list[int | None] = []
    method = evaluator.name
    for participants, data in rounds:
        if len(participants) != data.num_clients or len(set(participants)) != len(participants):
            raise ValueError(
                f"participants {list(participants)} do not match num_clients={data.num_clients}"
            )
        result = evaluator.evaluate(data, rng=rng)
        for local, client in enumerate(participants):
            if not 0 <= client < num_clients:
                raise ValueError(f"participant {client} outside clients 0..{num_clients - 1}")
            scores[client] += result.scores[local]
        calls += result.utility_calls
        drawn.append(result.permutations)
        method = result.method
    return ContributionResult(
        scores=tuple(float(s) for s in scores),
        utility_calls=calls,
        seconds=time.perf_counter() - started,
        method=f"fedsv({method})",
        permutations=_total(drawn),
    )


def _total(counts: Sequence[int | None]) -> int | None:
    """The sum of per-round permutation counts; ``None`` unless every round drew some."""
    known = [c for c in counts if c is not None]
    return sum(known) if counts and len(known) == len(counts) else None
