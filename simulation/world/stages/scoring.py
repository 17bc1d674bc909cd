"""Contribution scores on the validation split, and the reference Shapley values
the attack metrics compare rewards against."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from marketplace import Market
from marketplace.contribution import (
    ContributionEvaluator,
    MemoizedUtility,
    RoundData,
    coalition_utility,
    reference_shapley,
)
from simulation import names
from simulation.config.schema import ContributionConfig
from simulation.fl.coalition import CoalitionReply, aggregator_utility, is_weighted_mean
from simulation.fl.weights import flatten
from simulation.rng import SeedTree
from simulation.world.context import Federation, Recorder, RoundContext

__all__ = ["ScoreContributions"]

ValidationUtility = Callable[[np.ndarray], float]
"""The utility of a flat weight vector on the validation split (minus its loss)."""


@dataclass
class ScoreContributions:
    """Score the round's accepted updates with the scenario's evaluator (fed to
    score-based mechanisms and, as quality in [0, 1], to reputation)."""

    name: ClassVar[str] = "score"

    cfg: ContributionConfig
    evaluator: ContributionEvaluator | None
    utility_of: ValidationUtility
    tree: SeedTree
    fed: Federation
    market: Market
    rec: Recorder
    strategy: Any = None
    """The configured aggregator, whose hypothetical models the reference scores."""
    min_replies: int = 1
    """The fewest replies it builds a model from (smaller coalitions keep the global model)."""

    def round_data(self, ctx: RoundContext) -> RoundData:
        keys = list(self.fed.weights)
        base = flatten(self.fed.weights, keys)
        deltas = tuple(
            flatten(r.weights, keys) - base for r in ctx.accepted if r.weights is not None
        )
        counts = [r.num_examples for r in ctx.accepted]
        return RoundData(
            num_clients=len(ctx.accepted),
            # One counting cache for the round: the evaluator and a FedAvg reference
            # share coalitions, each still counting the distinct ones it asked for.
            utility=MemoizedUtility(
                coalition_utility(base, deltas, counts, self.utility_of), len(ctx.accepted)
            ),
            updates=deltas,
            weights=tuple(float(c) for c in counts),
            # Stable across rounds, for evaluators that keep per-client state (cgsv).
            clients=tuple(self.fed.account(r.client) for r in ctx.accepted),
        )

    def run(self, ctx: RoundContext) -> None:
        if not ctx.accepted or (self.evaluator is None and not self.cfg.reference):
            return
        data = self.round_data(ctx)
        accounts = list(data.clients or ())
        if self.evaluator is not None:
            self._score(ctx, data, accounts, self.evaluator)
        if self.cfg.reference:
            self._reference(ctx, data, accounts)

    def _score(
        self,
        ctx: RoundContext,
        data: RoundData,
        accounts: list[str],
        evaluator: ContributionEvaluator,
    ) -> None:
        res = evaluator.evaluate(data, rng=self.tree.numpy("contribution", ctx.round))
        ctx.scores = dict(zip(accounts, (float(v) for v in res.scores), strict=True))
        # The ledger's quality is in [0, 1]: the best contributor of the round gets 1,
        # a harmful (negative) one 0. Reputation builds on it.
        top = max((abs(v) for v in ctx.scores.values()), default=0.0)
        for account, v in ctx.scores.items():
            self.rec.add(ctx.round, account, names.CONTRIBUTION_SCORE, v)
            quality = min(max(v / top, 0.0), 1.0) if top > 0 else 0.0
            self.market.record_quality(round=ctx.round, client=account, score=quality)
        self.rec.add(ctx.round, names.GLOBAL, names.CONTRIBUTION_UTILITY_CALLS, res.utility_calls)

    def _reference(self, ctx: RoundContext, data: RoundData, accounts: list[str]) -> None:
        """Shapley values under the configured aggregator's own coalition models: exact
        up to ``exact_max_clients``, Monte Carlo with standard errors (recorded as
        ``true_contribution_se``) above."""
        utility = data.require_utility("reference")
        if self.strategy is not None and not is_weighted_mean(self.strategy):
            replies = [
                CoalitionReply(r.client, r.weights, r.num_examples)
                for r in ctx.accepted
                if r.weights is not None
            ]
            utility = aggregator_utility(
                self.strategy,
                self.min_replies,
                ctx.round,
                self.fed.weights,
                replies,
                self.utility_of,
                cohort=(ctx.eligible, len(ctx.sampled)),
            )
        ref = reference_shapley(
            utility,
            data.num_clients,
            rng=self.tree.numpy("reference", ctx.round),
            exact_max=self.cfg.exact_max_clients,
            max_permutations=self.cfg.reference_max_permutations,
        )
        ctx.reference = ref
        for account, v in zip(accounts, ref.scores, strict=True):
            self.rec.add(ctx.round, account, names.TRUE_CONTRIBUTION, float(v))
        for account, se in zip(accounts, ref.standard_errors or (), strict=False):
            self.rec.add(ctx.round, account, names.TRUE_CONTRIBUTION_SE, se)
