"""Aggregating the accepted updates with the scenario's Flower strategy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from simulation import names
from simulation.fl.messages import aggregation_reply
from simulation.world.context import Federation, Recorder, RoundContext
from simulation.world.records import Weights

if TYPE_CHECKING:  # Flower is imported when a round aggregates, not with the world
    from simulation.fl.strategies import ClientPrivate

__all__ = ["Aggregate"]

log = logging.getLogger("fedmarket.world")


@dataclass
class Aggregate:
    """Replies (sorted by client) go to the strategy's ``aggregate_train``; robust
    strategies get the global model first and report per-client weights, and a
    weight below ``flag_below`` flags the client; a selecting rule (Krum) reports
    the clients it kept (``aggregation_selected``). A round with no accepted update,
    or whose strategy returns no model, fails: ``ctx.failure`` says why and the
    global model stays as it was (no version, no emission: see the later stages)."""

    name: ClassVar[str] = "aggregate"

    strategy: Any
    fed: Federation
    rec: Recorder
    flag_below: float

    def run(self, ctx: RoundContext) -> None:
        from simulation.fl.strategies import ClientPrivate, Cohort, prepare_round

        # Every round, before the failure check: client-level DP learns the round's
        # cohort even when nobody was accepted (it releases every sampled round).
        prepare_round(self.strategy, self.fed.weights, Cohort(ctx.eligible, len(ctx.sampled)))
        dp = self.strategy if isinstance(self.strategy, ClientPrivate) else None
        if not ctx.accepted and (dp is None or not ctx.sampled):
            self._client_epsilon(ctx, dp)
            ctx.failure = "no accepted update"
            return
        msgs = []
        for r in ctx.accepted:
            assert r.weights is not None
            msgs.append(aggregation_reply(ctx.round, r.client, r.weights, r.num_examples))
        arrays, _ = self.strategy.aggregate_train(ctx.round, msgs)
        self._client_epsilon(ctx, dp)
        self._flags(ctx)
        if arrays is None:
            ctx.failure = "the strategy returned no model"
            log.warning("round %d: aggregation failed: %s", ctx.round, ctx.failure)
            return
        out = {k: np.asarray(v.numpy()) for k, v in arrays.items()}
        self.fed.weights = self._like_global(out)
        ctx.aggregated = True

    @staticmethod
    def _client_epsilon(ctx: RoundContext, dp: ClientPrivate | None) -> None:
        if dp is not None:
            ctx.client_epsilon = dp.client_epsilon()

    def _flags(self, ctx: RoundContext) -> None:
        for client in getattr(self.strategy, "last_selected", ()):
            account = self.fed.account(int(client))
            self.rec.add(ctx.round, account, names.AGGREGATION_SELECTED, 1.0)
        weights = getattr(self.strategy, "last_weights", None)
        for client, w in sorted((weights or {}).items()):
            account = self.fed.account(int(client))
            self.rec.add(ctx.round, account, names.AGGREGATION_WEIGHT, float(w))
            if float(w) < self.flag_below:
                self.rec.add(ctx.round, account, names.FLAGGED, 1.0)

    def _like_global(self, out: Weights) -> Weights:
        return {k: out[k].astype(self.fed.weights[k].dtype, copy=False) for k in self.fed.weights}
