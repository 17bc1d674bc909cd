"""Rating rules: how votes on a model version aggregate into one rating.

Each rule is a registry entry that a scenario names (``RATING_RULES.get(name)``):

* ``mean``: plain mean of the scores;
* ``reputation_weighted``: weights ∝ √reputation (falls back to the mean when
  every voter has zero reputation), so reputation helps but cannot dominate;
* ``yuma``: Bittensor's Yuma-Consensus-style clipping. The consensus is the
  stake-weighted κ-quantile *from the top* (the largest score that voters with
  at least κ of the stake rate at or above); scores above it are clipped down
  to it, then the stake-weighted mean is taken. A minority with little stake
  cannot inflate a rating.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from marketplace.registry_base import Registry

__all__ = ["RATING_RULES", "Ballot", "RatingRule", "aggregate_rating", "yuma_consensus"]


@dataclass(frozen=True, slots=True)
class Ballot:
    """One voter's score with the weights rules may use."""

    voter: str
    score: float
    stake: int
    reputation: float


RatingRule = Callable[[Sequence[Ballot]], float]
RATING_RULES: Registry[RatingRule] = Registry("rating rule")


def _mean(ballots: Sequence[Ballot]) -> float:
    if not ballots:
        raise ValueError("no votes to aggregate")
    return sum(b.score for b in ballots) / len(ballots)


@RATING_RULES.decorator("mean")
def mean_rating(ballots: Sequence[Ballot]) -> float:
    """Plain mean."""
    return _mean(ballots)


@RATING_RULES.decorator("reputation_weighted")
def reputation_weighted(ballots: Sequence[Ballot]) -> float:
    """Mean weighted by √reputation."""
    weights = [math.sqrt(max(b.reputation, 0.0)) for b in ballots]
    total = sum(weights)
    if total == 0:
        return _mean(ballots)
    return sum(w * b.score for w, b in zip(weights, ballots, strict=True)) / total


def yuma_consensus(scores: Sequence[float], stakes: Sequence[float], kappa: float = 0.5) -> float:
    """Largest score ``c`` such that voters scoring ``>= c`` hold >= ``kappa`` of the stake."""
    total = float(sum(stakes))
    if total <= 0:
        raise ValueError("yuma consensus needs positive total stake")
    acc = 0.0
    for score, stake in sorted(zip(scores, stakes, strict=True), key=lambda p: -p[0]):
        acc += stake
        if acc >= kappa * total:
            return score
    return min(scores)


def make_yuma(kappa: float = 0.5) -> RatingRule:
    """A Yuma-style rule with quantile ``kappa``."""

    def rule(ballots: Sequence[Ballot]) -> float:
        if not ballots:
            raise ValueError("no votes to aggregate")
        stakes = [float(b.stake) for b in ballots]
        if sum(stakes) <= 0:
            return _mean(ballots)
        scores = [b.score for b in ballots]
        c = yuma_consensus(scores, stakes, kappa)
        clipped = [min(s, c) for s in scores]
        return sum(w * s for w, s in zip(stakes, clipped, strict=True)) / sum(stakes)

    return rule


RATING_RULES.register("yuma", make_yuma(0.5))


def aggregate_rating(rule: str, ballots: Sequence[Ballot]) -> float:
    """Aggregate ``ballots`` with the rule named ``rule`` (ValueError on unknown names)."""
    return RATING_RULES.get(rule)(ballots)
