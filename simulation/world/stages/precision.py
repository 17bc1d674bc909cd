"""Whether the round's Monte Carlo reference contribution met its precision target.

Above ``contribution.exact_max_clients`` the reference is estimated by permutation
sampling (:func:`marketplace.contribution.monte_carlo_shapley`), which stops once
every client's standard error is at most ``REFERENCE_SE_TOLERANCE · |U(N) − U(∅)| / n``
or at its permutation cap (``contribution.reference_max_permutations``), whichever
comes first. At the cap the target may be missed; a researcher must not publish such
a round as if it were precise, so the miss is never silent:
``contribution.on_imprecise: error`` (the default) stops the run naming the field and
the round, ``record`` keeps the estimate and records the miss (``rounds.parquet``
``reference_se_ratio`` > 1, the manifest's ``reference`` block and the run summary).

The estimator reports its target, whether it met it and the permutations it drew
(``ContributionResult.se_target``, ``converged`` and ``permutations``) and logs nothing;
this stage decides what a miss means, and names the permutations actually drawn. The
recorded rows still let anyone repeat the check from ``metrics.parquet``: each
permutation's marginals telescope to ``U(N) − U(∅)``, so a round's
``true_contribution`` values sum to it, and the target is
``REFERENCE_SE_TOLERANCE · |Σ values| / n`` (:func:`marketplace.contribution.se_target`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from marketplace.contribution import REFERENCE_SE_TOLERANCE, ContributionResult
from simulation.errors import Problem, ScenarioError
from simulation.world.context import RoundContext

__all__ = ["CheckReferencePrecision", "se_ratio"]

log = logging.getLogger("fedmarket.world")

FIELD = "contribution.on_imprecise"
"""The scenario field that decides what a missed target does."""
CAP_FIELD = "contribution.reference_max_permutations"
"""The scenario field that sets the permutation cap."""


def se_ratio(result: ContributionResult) -> float:
    """The largest standard error over the estimator's target (≤ 1: the target was met).

    A round whose gain is 0 has target 0: ratio 0 if the estimator met it (every
    standard error 0), else infinite."""
    if result.standard_errors is None or result.se_target is None or result.converged is None:
        raise ValueError(f"{result.method} reports no precision target")
    worst = max(result.standard_errors)
    if result.se_target == 0:
        return 0.0 if result.converged else math.inf
    return worst / result.se_target


@dataclass
class CheckReferencePrecision:
    """After the reference is scored: set ``ctx.reference_se_ratio`` in a Monte Carlo
    round, and stop the run (``on_imprecise: error``) or warn (``record``) when the
    estimator says it missed its standard-error target."""

    name: ClassVar[str] = "reference_precision"

    on_imprecise: Literal["error", "record"]

    def run(self, ctx: RoundContext) -> None:
        ref = ctx.reference
        if ref is None or ref.converged is None:  # no reference this round, or exact
            return
        ratio = se_ratio(ref)
        ctx.reference_se_ratio = ratio
        if ref.converged:
            return
        assert ref.permutations is not None  # a result with a target counts its permutations
        drawn = f"{ref.permutations:,}"
        what = (
            f"round {ctx.round}: the Monte Carlo reference contribution stopped after "
            f"{drawn} permutations without meeting its target: a standard error "
            f"{ratio:.3g} times the target ({REFERENCE_SE_TOLERANCE:.0%} of the mean "
            f"per-client gain; the cap is {CAP_FIELD})"
        )
        if self.on_imprecise == "error":
            raise ScenarioError(
                [
                    Problem(
                        "scenario",
                        FIELD,
                        f"{what}; raise {CAP_FIELD}, compute it exactly "
                        f"(contribution.exact_max_clients, up to 16) or set {FIELD}: "
                        "record to keep the estimate and flag the round",
                    )
                ]
            )
        log.warning("%s (%s: record)", what, FIELD)
