"""Rating rules: how votes on a model version aggregate into one rating.

Each rule is a registry entry that a scenario names (``RATING_RULES.get(name)``,
or :func:`make_rating_rule` with parameters):

* ``mean``: plain mean of the scores;
* ``reputation_weighted``: weights ∝ √reputation (falls back to the mean when
  every voter has zero reputation), so reputation helps but cannot dominate;
* ``yuma``: Yuma Consensus (Bittensor) on the version's column of votes, the
  same consensus, clipping and rank as :func:`marketplace.yuma.yuma_epoch`. The
  consensus ``C`` is the stake-weighted κ-quantile of the scores *from the top*
  (the largest score that voters holding at least κ of the stake rate at or
  above; κ = ``kappa``, 0.5 by default); every score above ``C`` is clipped to
  ``C``; the rating is the stake-weighted mean of the clipped scores (Yuma's
  rank over the total stake). A minority with less than κ of the stake cannot
  inflate a rating; it can still pull it down in proportion to its stake
  (Yuma clips from above only). A rating is an absolute score on 0-5, not a
  share of a validator's weight, so Yuma's row normalisation and 16-bit
  quantisation of ``C`` (which exist to turn weights into emission shares) are
  not applied. Votes with zero total stake have no consensus: ``ValueError``,
  never a silent fallback to the mean.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from marketplace.registry_base import Registry
from marketplace.yuma import stake_quantile

__all__ = [
    "RATING_RULES",
    "Ballot",
    "RatingRule",
    "aggregate_rating",
    "make_rating_rule",
    "make_yuma",
    "rating_rule_factory",
    "yuma_consensus",
]


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
    """Largest score ``c`` such that voters scoring ``>= c`` hold >= ``kappa`` of the stake.

    Yuma's per-server consensus (:func:`marketplace.yuma.stake_quantile`); zero
    total stake raises ``ValueError``.
    """
    return stake_quantile(
        np.asarray(scores, dtype=np.float64), np.asarray(stakes, dtype=np.float64), kappa
    )


def make_yuma(kappa: float = 0.5) -> RatingRule:
    """The ``yuma`` rule with consensus quantile ``kappa`` (in (0, 1])."""
    if not (isinstance(kappa, int | float) and 0.0 < float(kappa) <= 1.0):
        raise ValueError(f"yuma: kappa must be in (0, 1], got {kappa!r}")

    def rule(ballots: Sequence[Ballot]) -> float:
        if not ballots:
            raise ValueError("no votes to aggregate")
        stakes = [float(b.stake) for b in ballots]
        scores = [b.score for b in ballots]
        c = yuma_consensus(scores, stakes, float(kappa))
        clipped = [min(s, c) for s in scores]
        return sum(w * s for w, s in zip(stakes, clipped, strict=True)) / sum(stakes)

    return rule


RATING_RULES.register("yuma", make_yuma(0.5))

_FACTORIES: dict[str, Callable[..., RatingRule]] = {"yuma": make_yuma}


def rating_rule_factory(name: str) -> Callable[..., RatingRule] | None:
    """The factory that builds rule ``name`` with parameters (``None``: it takes none)."""
    return _FACTORIES.get(name)


def make_rating_rule(name: str, params: Mapping[str, float] | None = None) -> RatingRule:
    """The rule ``name`` built with ``params`` (e.g. ``{"kappa": 0.6}`` for ``yuma``).

    Unknown names raise ``ValueError`` listing the valid ones; a parameter the
    rule does not take raises ``ValueError`` naming it.
    """
    rule = RATING_RULES.get(name)
    if not params:
        return rule
    factory = _FACTORIES.get(name)
    accepted = set(inspect.signature(factory).parameters) if factory is not None else set()
    unknown = sorted(set(params) - accepted)
    if unknown or factory is None:
        raise ValueError(
            f"rating rule {name!r} takes no parameter {', '.join(unknown)} "
            f"(valid: {', '.join(sorted(accepted)) or 'none'})"
        )
    return factory(**params)


def aggregate_rating(
    rule: str, ballots: Sequence[Ballot], params: Mapping[str, float] | None = None
) -> float:
    """Aggregate ``ballots`` with the rule named ``rule`` built with ``params``."""
    return make_rating_rule(rule, params)(ballots)
