"""Aggregating the accepted updates with the scenario's Flower strategy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from simulation import names
from simulation.fl.messages import aggregation_reply
from simulation.world.context import Federation, Recorder, RoundContext
from simulation.world.records import Weights

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
        from simulation.fl.client_dp import DPFedAvg

        dp = self.strategy if isinstance(self.strategy, DPFedAvg) else None
        if dp is not None:
            # Client-level DP releases every round that sampled anyone, even with no
            # accepted reply: whether a round is released must not depend on the updates.
            dp.set_cohort(ctx.eligible, len(ctx.sampled))
        if not ctx.accepted and (dp is None or not ctx.sampled):
            self._client_epsilon(ctx, dp)
            ctx.failure = "no accepted update"
            return
        from flwr.app import Array, ArrayRecord

        from simulation.fl.strategies import NeedsGlobal

        msgs = []
        for r in ctx.accepted:
            assert r.weights is not None
            msgs.append(aggregation_reply(ctx.round, r.client, r.weights, r.num_examples))
        if isinstance(self.strategy, NeedsGlobal):
            current = {k: Array(np.ascontiguousarray(v)) for k, v in self.fed.weights.items()}
            self.strategy.set_global(ArrayRecord(current))
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
    def _client_epsilon(ctx: RoundContext, dp: Any) -> None:
        if dp is None:
            return
        last = dp.last_epsilon
        ctx.client_epsilon = (
            (last.round, last.cumulative) if last is not None else (0.0, dp.accountant.cumulative)
        )

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
