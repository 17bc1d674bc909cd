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
    "CLIENT_DP_STRATEGIES",
    "AggregatorSpec",
    "DPFedAvgParams",
    "StrategyParams",
    "client_dp_problem",
    "create_strategy",
    "min_replies",
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


class DPFedAvgParams(StrategyParams):
    """User-level DP-FedAvg (``simulation.fl.client_dp``): the world's sampled count is ``m``."""

    noise_multiplier: float = Field(gt=0.0, description="σ: noise std is σ·C/m on the average")
    clipping_norm: float = Field(gt=0.0, description="C: each update's L2 norm bound")
    delta: float = Field(1e-5, gt=0.0, lt=1.0, description="δ of the client-level (ε, δ)")


CLIENT_DP_MODES: dict[str, type[StrategyParams]] = {"dp-fedavg": DPFedAvgParams}
"""Client-level DP (``aggregation.client_dp.mode``) and its parameters."""

CLIENT_DP_STRATEGIES = frozenset({"fedavg", "fedprox"})
"""Strategies whose server step DP-FedAvg replaces with its sensitivity-bounded mean
(FedProx differs from FedAvg only on the clients, where the proximal term lives)."""

WITHOUT_CLIENT_DP_GUARANTEE: dict[str, str] = {
    "fedmedian": "the coordinate-wise median is not bounded by the C/m sensitivity the noise"
    " is calibrated to",
    "fedtrimmedavg": "the trimmed mean's surviving set depends on every update, so one client"
    " moves it by more than C/m",
    "krum": "Krum selects one client's update: one client changes the output by up to 2C",
    "multikrum": "Multi-Krum's selection depends on every update: sensitivity is not C/m",
    "bulyan": "Bulyan's selection and trimming depend on every update: sensitivity is not C/m",
    "foolsgold": "FoolsGold's weights depend on every client's history: sensitivity is not C/m",
    "fltrust": "FLTrust rescales every update to the root update's norm, undoing the clipping",
}
"""Why each other strategy has no client-level guarantee under ``aggregation.client_dp``."""

FLOWER_DP_WRAPPERS: dict[str, str] = {
    "server-fixed": "Flower's server-side fixed clipping calibrates noise to C/m but the wrapped"
    " strategy weights by example count (sensitivity C·n_i/Σn) and no ε is computed",
    "server-adaptive": "Flower's adaptive clipping spends privacy on the clipped count as well,"
    " which no accountant here composes, and the wrapped strategy weights by example count",
}
"""Modes earlier versions offered, and why they are refused (use ``dp-fedavg``)."""


def client_dp_problem(strategy: str, client_dp: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(field, reason)`` when ``client_dp`` around ``strategy`` has no valid guarantee."""
    mode = client_dp.get("mode")
    if isinstance(mode, str) and mode in FLOWER_DP_WRAPPERS:
        return "aggregation.client_dp.mode", (
            f"{mode!r} has no valid client-level guarantee: {FLOWER_DP_WRAPPERS[mode]}; "
            "use mode dp-fedavg"
        )
    if strategy in CLIENT_DP_STRATEGIES:
        return None
    why = WITHOUT_CLIENT_DP_GUARANTEE.get(strategy, "its sensitivity is not bounded by C/m")
    return "aggregation.strategy", (
        f"aggregation.client_dp cannot wrap {strategy!r}: {why} "
        f"(client-level DP needs one of: {', '.join(sorted(CLIENT_DP_STRATEGIES))})"
    )


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


def _ours(
    cls_name: Literal["FoolsGold", "FLTrust", "Krum", "MultiKrum"], flower_base: bool = False
) -> Callable[[StrategyParams], Any]:
    def build(params: StrategyParams) -> Any:
        from simulation.fl import strategies

        base = strategies.FLOWER_BASE if flower_base else {}
        return getattr(strategies, cls_name)(**base, **params.model_dump())

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

RECORDS_SELECTION = frozenset({"krum", "multikrum"})
"""Flower strategies built as our thin subclass that also records which clients'
updates were selected (``simulation.fl.strategies.Krum``; the aggregate is Flower's)."""

for _name, (_cls, _params) in FLOWER_STRATEGIES.items():
    _build = _ours(_cls, flower_base=True) if _name in RECORDS_SELECTION else _flower(_cls)  # type: ignore[arg-type]
    AGGREGATORS.register(_name, AggregatorSpec(_params, _build, f"Flower's {_cls}"))
AGGREGATORS.register(
    "foolsgold", AggregatorSpec(FoolsGoldParams, _ours("FoolsGold"), "FoolsGold (Fung et al.)")
)
AGGREGATORS.register(
    "fltrust", AggregatorSpec(FLTrustParams, _ours("FLTrust"), "FLTrust (Cao et al.)")
)


# Replies a Byzantine-robust rule needs for ``f`` tolerated attackers, as its paper states:
# Krum and Multi-Krum (Blanchard et al. 2017) n ≥ 2f + 3; Bulyan (El Mhamdi et al. 2018)
# n ≥ 4f + 3. Flower runs below these bounds (Krum with fewer neighbours, Bulyan not at all).
MIN_REPLIES: dict[str, tuple[int, int]] = {"krum": (2, 3), "multikrum": (2, 3), "bulyan": (4, 3)}
"""Strategy → ``(a, b)``: the rule needs at least ``a·f + b`` replies."""


def min_replies(strategy: str, params: Mapping[str, Any]) -> int:
    """The fewest replies from which ``strategy`` builds a model as its paper defines it:
    ``a·f + b`` for the rules in :data:`MIN_REPLIES` (Multi-Krum also needs the ``m``
    it selects), 1 for every other rule. The reference contribution gives a smaller
    coalition the previous global model's utility (docs/contribution.md)."""
    if strategy not in MIN_REPLIES:
        return 1
    a, b = MIN_REPLIES[strategy]
    need = a * int(params.get("num_malicious_nodes", 0)) + b
    if strategy == "multikrum":
        need = max(need, int(params.get("num_nodes_to_select", 1)))
    return need


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


SERVER_MOMENTUM_WITH_CLIENT_DP = (
    "aggregation.server_momentum cannot be combined with aggregation.client_dp: the"
    " world reads ε from the DP-FedAvg strategy itself (momentum is post-processing and"
    " would keep the guarantee, but the wrapped accountant is not wired)"
)


def create_strategy(
    name: str,
    params: Mapping[str, Any] | StrategyParams,
    client_dp: Mapping[str, Any] | None = None,
    rng: Any = None,
    server_momentum: float = 0.0,
) -> Any:
    """Instantiate the aggregator ``name`` with ``params``; with ``client_dp``
    (``{"mode": "dp-fedavg", **params}``) the server step is user-level DP-FedAvg
    (:class:`simulation.fl.client_dp.DPFedAvg`, noise drawn from ``rng``) instead.
    ``server_momentum`` β > 0 wraps the rule in
    :class:`simulation.fl.strategies.ServerMomentum` (heavy-ball server step).

    Raises ``ValueError`` for an unknown name, invalid parameters, or a
    combination without a valid client-level guarantee (the scenario loader
    reports those before a run starts, naming the field).
    """
    spec = AGGREGATORS.get(name)
    validated = params if isinstance(params, StrategyParams) else spec.params(**dict(params))
    if server_momentum and client_dp:
        raise ValueError(SERVER_MOMENTUM_WITH_CLIENT_DP)
    if server_momentum:
        from simulation.fl.strategies import ServerMomentum

        return ServerMomentum(spec.build(validated), server_momentum)
    if not client_dp:
        return spec.build(validated)
    problem = client_dp_problem(name, client_dp)
    if problem is not None:
        raise ValueError(f"{problem[0]}: {problem[1]}")
    dp = dict(client_dp)
    mode = str(dp.pop("mode"))
    if mode not in CLIENT_DP_MODES:
        raise ValueError(
            f"unknown client-level DP mode {mode!r} (valid: {', '.join(CLIENT_DP_MODES)})"
        )
    dp_params = DPFedAvgParams(**dp)
    from simulation.fl.client_dp import DPFedAvg

    return DPFedAvg(**dp_params.model_dump(), rng=rng)
