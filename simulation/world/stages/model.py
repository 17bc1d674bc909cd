"""Evaluating the new global model and registering it as a model version."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from marketplace import Market
from marketplace.incentives import IncentiveMechanism
from simulation.config.prices import Pricing, price_list
from simulation.fl.evaluation import registry_metrics
from simulation.fl.weights import safetensors_bytes
from simulation.world.context import Federation, RoundContext
from simulation.world.population import Population
from simulation.world.server_model import ServerModel
from simulation.world.stages.economy import round_outcome

__all__ = ["EvaluateModel", "RegisterVersion", "price_list"]


@dataclass
class EvaluateModel:
    """The new global model's metrics: test split for the round record, validation
    and test splits plus the footprint for the registry, and the backdoor success
    rate when the population has a backdoor."""

    name: ClassVar[str] = "evaluate"

    server: ServerModel
    population: Population
    fed: Federation

    def run(self, ctx: RoundContext) -> None:
        weights = self.fed.weights
        test = self.server.test_results(weights)
        validation = self.server.validation_results(weights)
        ctx.test = test.as_dict()
        ctx.registry_metrics = registry_metrics(validation, test, self.server.footprint)
        ctx.backdoor_success = self.server.backdoor_success(weights, self.population)


class RegisterVersion:
    """Register the global model as a version (artifact hash, registry metrics,
    contributor shares) with the scenario's price list for its measured metrics
    (:func:`simulation.config.prices.pricing_for`). The shares, which split the
    version's licence revenue, are ``rule``'s weights for the round normalised to 1
    (the ``revenue_share`` rule, else the rewards mechanism: ``data_size`` by claimed
    examples, ``score`` by contribution score, ...; a cap on one round's emission
    does not apply to them). With ``keep``,
    the version's safetensors bytes (the ones hashed) are kept under its id, for
    ``output.keep_versions``. A round whose aggregation failed registers nothing and
    signs an ``aggregation_failed`` entry with the reason instead."""

    name: ClassVar[str] = "register_version"

    def __init__(
        self,
        market: Market,
        fed: Federation,
        pricing: Pricing,
        keep: dict[str, bytes] | None = None,
        *,
        rule: IncentiveMechanism,
    ) -> None:
        self.market = market
        self.rule = rule
        self.fed = fed
        self.pricing = pricing
        self.keep = keep

    def run(self, ctx: RoundContext) -> None:
        if ctx.failure is not None:
            self.market.record("aggregation_failed", {"round": ctx.round, "reason": ctx.failure})
            return
        weights = self.rule.score(round_outcome(ctx, self.fed, 0))
        total = sum(weights.values())
        shares = {a: w / total for a, w in sorted(weights.items()) if w > 0}
        artifact = safetensors_bytes(self.fed.weights)
        self.fed.version = self.market.register_model_version(
            round=ctx.round,
            parent=self.fed.version,
            artifact_sha256=hashlib.sha256(artifact).hexdigest(),
            metrics=ctx.registry_metrics,
            contributors=shares,
        )
        if self.keep is not None:
            self.keep[self.fed.version] = artifact
        prices = self.pricing(ctx.registry_metrics)
        if prices:
            self.market.set_price_list(self.fed.version, prices)
