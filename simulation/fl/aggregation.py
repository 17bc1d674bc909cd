"""Aggregators by the names scenarios use: Flower's message-based strategies and ours.

FedMarket owns the round loop (a simpy process), so a strategy is used for
what it is best at: ``aggregate_train(round, replies)``. Replies are passed
sorted by client, so floating-point sums are reproducible.

Each registry entry is an :class:`AggregatorSpec`: a pydantic model of the
parameters a scenario may set, and a builder. The parameter models are
declared here, without importing Flower, so validating a scenario stays fast;
``tests/strategies`` checks that every declared parameter exists in Flower's
own constructor, so the two cannot drift apart. Sampling is done by the world
with the scenario's RNG, never by the strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulation.registry import Registry

__all__ = [
    "AGGREGATORS",
    "CLIENT_DP_MODES",
    "AggregatorSpec",
    "StrategyParams",
    "create_strategy",
]


class StrategyParams(BaseModel):
    """Base of every aggregator's (and DP wrapper's) parameter model."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NoParams(StrategyParams):
    """The rule takes no parameters."""


class FedProxParams(StrategyParams):
    proximal_mu: float = Field(0.0, ge=0.0, description="weight μ of the proximal term")


class TrimmedMeanParams(StrategyParams):
    beta: float = Field(0.2, ge=0.0, lt=0.5, description="fraction trimmed at each end")


class KrumParams(StrategyParams):
    num_malicious_nodes: int = Field(0, ge=0, description="f, the Byzantine clients tolerated")


class MultiKrumParams(KrumParams):
    num_nodes_to_select: int = Field(1, ge=1, description="m, the updates averaged")


class FoolsGoldParams(StrategyParams):
    kappa: float = Field(1.0, gt=0.0, description="confidence parameter of the logit")


class FLTrustParams(StrategyParams):
    server_lr: float = Field(1.0, gt=0.0, description="server learning rate")


class ServerFixedDPParams(StrategyParams):
    noise_multiplier: float = Field(ge=0.0)
    clipping_norm: float = Field(gt=0.0)
    num_sampled_clients: int = Field(ge=1)


class ServerAdaptiveDPParams(StrategyParams):
    noise_multiplier: float = Field(ge=0.0)
    num_sampled_clients: int = Field(ge=1)
    initial_clipping_norm: float = Field(0.1, gt=0.0)
    target_clipped_quantile: float = Field(0.5, ge=0.0, le=1.0)
    clip_norm_lr: float = Field(0.2, gt=0.0)
    clipped_count_stddev: float | None = Field(None, ge=0.0)


CLIENT_DP_MODES: dict[str, type[StrategyParams]] = {
    "server-fixed": ServerFixedDPParams,
    "server-adaptive": ServerAdaptiveDPParams,
}
"""Client-level DP wrappers (``aggregation.client_dp.mode``) and their parameters."""


@dataclass(frozen=True)
class AggregatorSpec:
    """A registry entry: the parameters a scenario may set, and how to build the strategy."""

    params: type[StrategyParams]
    build: Callable[[StrategyParams], Any]
    doc: str = ""


AGGREGATORS: Registry[AggregatorSpec] = Registry("aggregation strategy")


def _flower(cls_name: str) -> Callable[[StrategyParams], Any]:
    def build(params: StrategyParams) -> Any:
        from flwr.serverapp import strategy

        from simulation.fl.strategies import FLOWER_BASE

        return getattr(strategy, cls_name)(**FLOWER_BASE, **params.model_dump())

    return build


def _ours(cls_name: Literal["FoolsGold", "FLTrust"]) -> Callable[[StrategyParams], Any]:
    def build(params: StrategyParams) -> Any:
        from simulation.fl import strategies

        return getattr(strategies, cls_name)(**params.model_dump())

    return build


FLOWER_STRATEGIES: dict[str, tuple[str, type[StrategyParams]]] = {
    "fedavg": ("FedAvg", NoParams),
    "fedprox": ("FedProx", FedProxParams),
    "fedmedian": ("FedMedian", NoParams),
    "fedtrimmedavg": ("FedTrimmedAvg", TrimmedMeanParams),
    "krum": ("Krum", KrumParams),
    "multikrum": ("MultiKrum", MultiKrumParams),
    "bulyan": ("Bulyan", KrumParams),
}
"""Scenario name → (Flower class, parameter model)."""

for _name, (_cls, _params) in FLOWER_STRATEGIES.items():
    AGGREGATORS.register(_name, AggregatorSpec(_params, _flower(_cls), f"Flower's {_cls}"))
AGGREGATORS.register(
    "foolsgold", AggregatorSpec(FoolsGoldParams, _ours("FoolsGold"), "FoolsGold (Fung et al.)")
)
AGGREGATORS.register(
    "fltrust", AggregatorSpec(FLTrustParams, _ours("FLTrust"), "FLTrust (Cao et al.)")
)


def proximal_mu(strategy: str, params: Mapping[str, Any]) -> float:
    """FedProx's μ for local training: ``params["proximal_mu"]`` under ``fedprox``, else 0.

    Flower's ``FedProx`` only *sends* μ in ``configure_train``, which FedMarket's
    world never calls (it owns the round loop), and aggregates like FedAvg; the
    proximal term itself lives in the clients' training
    (``simulation.fl.training.ProximalTerm``), so the world puts μ in every
    ``ClientTask``.
    """
    if strategy != "fedprox":
        return 0.0
    return float(params.get("proximal_mu", 0.0))


def create_strategy(
    name: str,
    params: Mapping[str, Any] | StrategyParams,
    client_dp: Mapping[str, Any] | None = None,
    rng: Any = None,
) -> Any:
    """Instantiate the aggregator ``name`` with ``params``, optionally wrapped in one of
    Flower's client-level DP wrappers (``client_dp = {"mode": ..., **params}``).

    Raises ``ValueError`` for an unknown name or invalid parameters (the scenario
    loader reports those before a run starts, naming the field).
    """
    spec = AGGREGATORS.get(name)
    validated = params if isinstance(params, StrategyParams) else spec.params(**dict(params))
    strategy = spec.build(validated)
    if client_dp:
        from simulation.fl.strategies import wrap_client_dp

        dp = dict(client_dp)
        mode = str(dp.pop("mode"))
        strategy = wrap_client_dp(strategy, mode, dp, rng=rng)
    return strategy
