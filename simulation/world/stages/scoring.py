"""Contribution scores on the validation split, and the reference Shapley values
the attack metrics compare rewards against."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from marketplace import Market
from marketplace.contribution import (
    ContributionEvaluator,
    RoundData,
    coalition_utility,
    create_evaluator,
)
from simulation import names
from simulation.config.schema import ContributionConfig
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

    def round_data(self, ctx: RoundContext) -> RoundData:
        keys = list(self.fed.weights)
        base = flatten(self.fed.weights, keys)
        deltas = tuple(
            flatten(r.weights, keys) - base for r in ctx.accepted if r.weights is not None
        )
        counts = [r.num_examples for r in ctx.accepted]
        return RoundData(
            num_clients=len(ctx.accepted),
            utility=coalition_utility(base, deltas, counts, self.utility_of),
            updates=deltas,
            weights=tuple(float(c) for c in counts),
        )

    def run(self, ctx: RoundContext) -> None:
        if not ctx.accepted or (self.evaluator is None and not self.cfg.reference):
            return
        data = self.round_data(ctx)
        accounts = [self.fed.account(r.client) for r in ctx.accepted]
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
        exact = len(ctx.accepted) <= self.cfg.exact_max_clients
        ref = create_evaluator("exact_shapley" if exact else "gtg_shapley").evaluate(
            data, rng=self.tree.numpy("reference", ctx.round)
        )
        for account, v in zip(accounts, ref.scores, strict=True):
            self.rec.add(ctx.round, account, names.TRUE_CONTRIBUTION, float(v))
