"""Aggregators: Flower's own message-based strategies, by the names scenarios use.

FedMarket owns the round loop (a simpy process), so a strategy is used for
what it is best at: ``aggregate_train(round, replies)``. Replies are passed
sorted by client, so floating-point sums are reproducible.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from simulation.registry import Registry

StrategyFactory = Callable[[Mapping[str, Any]], Any]
AGGREGATORS: Registry[StrategyFactory] = Registry("aggregation strategy")

# Sampling is done by the world with the scenario's RNG, never by the strategy.
_BASE = {
    "fraction_train": 1.0,
    "fraction_evaluate": 1.0,
    "min_train_nodes": 1,
    "min_evaluate_nodes": 1,
    "min_available_nodes": 1,
}


def _flower(cls_name: str) -> StrategyFactory:
    def factory(params: Mapping[str, Any]) -> Any:
        from flwr.serverapp import strategy

        cls = getattr(strategy, cls_name)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise ValueError(
                f"{cls_name} takes no parameter {', '.join(unknown)} "
                f"(valid: {', '.join(sorted(accepted - set(_BASE)))})"
            )
        kwargs = {k: v for k, v in _BASE.items() if k in accepted}
        kwargs.update(params)
        return cls(**kwargs)

    factory.__doc__ = f"Flower's ``{cls_name}`` strategy."
    return factory


for _name, _cls in {
    "fedavg": "FedAvg",
    "fedprox": "FedProx",
    "fedmedian": "FedMedian",
    "fedtrimmedavg": "FedTrimmedAvg",
    "krum": "Krum",
    "multikrum": "MultiKrum",
    "bulyan": "Bulyan",
}.items():
    AGGREGATORS.register(_name, _flower(_cls))


def _register_robust() -> None:
    from simulation.fl.strategies import register

    register(AGGREGATORS)


_register_robust()


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
    params: Mapping[str, Any],
    client_dp: Mapping[str, Any] | None = None,
    rng: Any = None,
) -> Any:
    """Instantiate the aggregator ``name`` with ``params``, optionally wrapped in one of
    Flower's client-level DP wrappers (``client_dp = {"mode": ..., **params}``)."""
    strategy = AGGREGATORS.get(name)(params)
    if client_dp:
        from simulation.fl.strategies import wrap_client_dp

        dp = dict(client_dp)
        mode = str(dp.pop("mode"))
        strategy = wrap_client_dp(strategy, mode, dp, rng=rng)
    return strategy
