"""Whether the round's Monte Carlo reference contribution met its precision target.

Above ``contribution.exact_max_clients`` the reference is estimated by permutation
sampling (:func:`marketplace.contribution.monte_carlo_shapley`), which stops once
every client's standard error is at most ``REFERENCE_SE_TOLERANCE · |U(N) − U(∅)| / n``
or at its permutation cap, whichever comes first. At the cap the target may be
missed; a researcher must not publish such a round as if it were precise, so the
miss is never silent: ``contribution.on_imprecise: error`` (the default) stops the
run naming the field and the round, ``record`` keeps the estimate and records the
miss (``rounds.parquet`` ``reference_se_ratio`` > 1, the manifest's ``reference``
block and the run summary).

The check reads what the reference recorded (``true_contribution`` and
``true_contribution_se`` rows), so anyone can repeat it from ``metrics.parquet``:
each permutation's marginals telescope to ``U(N) − U(∅)``, so the values of a round
sum to it, and the target is ``REFERENCE_SE_TOLERANCE · |Σ values| / n``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from marketplace.contribution import REFERENCE_MAX_PERMUTATIONS, REFERENCE_SE_TOLERANCE, se_target
from simulation import names
from simulation.errors import Problem, ScenarioError
from simulation.world.context import Recorder, RoundContext

__all__ = ["CheckReferencePrecision", "se_ratio"]

log = logging.getLogger("fedmarket.world")

FIELD = "contribution.on_imprecise"
"""The scenario field that decides what a missed target does."""

_ROUNDING = 1e-9
"""Relative slack on the target: the sum of the recorded values equals the
estimator's ``U(N) − U(∅)`` only up to floating-point rounding."""


def se_ratio(values: list[float], errors: list[float]) -> float:
    """The largest standard error over the round's target (≤ 1: the target was met).

    A round whose gain is 0 needs every standard error to be 0 (ratio 0), else the
    ratio is infinite."""
    target = se_target(sum(values), len(values))
    worst = max(errors)
    if worst <= target * (1 + _ROUNDING):  # met
        return 0.0 if target == 0 else min(worst / target, 1.0)
    return math.inf if target == 0 else worst / target


@dataclass
class CheckReferencePrecision:
    """After the reference is scored: set ``ctx.reference_se_ratio`` in a Monte Carlo
    round, and stop the run (``on_imprecise: error``) or warn (``record``) when the
    standard errors missed their target."""

    name: ClassVar[str] = "reference_precision"

    on_imprecise: Literal["error", "record"]
    rec: Recorder
    _read: int = field(default=0, init=False, repr=False)
    """Rows are append-only: each round reads only those added since the last."""

    def run(self, ctx: RoundContext) -> None:
        values, errors = self._recorded(ctx.round)
        if not errors:  # exact Shapley, or no reference this round
            return
        ratio = se_ratio(values, errors)
        ctx.reference_se_ratio = ratio
        if ratio <= 1.0:
            return
        what = (
            f"round {ctx.round}: the Monte Carlo reference contribution stopped at its "
            f"{REFERENCE_MAX_PERMUTATIONS:,}-permutation cap with a standard error "
            f"{ratio:.3g} times its target ({REFERENCE_SE_TOLERANCE:.0%} of the mean "
            "per-client gain)"
        )
        if self.on_imprecise == "error":
            raise ScenarioError(
                [
                    Problem(
                        "scenario",
                        FIELD,
                        f"{what}; compute it exactly (contribution.exact_max_clients, up "
                        f"to 16) or set {FIELD}: record to keep the estimate and flag the "
                        "round",
                    )
                ]
            )
        log.warning("%s (%s: record)", what, FIELD)

    def _recorded(self, round_: int) -> tuple[list[float], list[float]]:
        """This round's reference values and standard errors, from the rows added
        since the last round."""
        rows = self.rec.rows[self._read :]
        self._read = len(self.rec.rows)
        values = [
            r.value for r in rows if r.round == round_ and r.metric == names.TRUE_CONTRIBUTION
        ]
        errors = [
            r.value for r in rows if r.round == round_ and r.metric == names.TRUE_CONTRIBUTION_SE
        ]
        return values, errors
