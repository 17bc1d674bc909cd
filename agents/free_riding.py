"""Free-riders: clients that take the global model without contributing training.

Fraboni, Vidal & Lorenzi (2021), "Free-rider attacks on model aggregation in federated
learning" (AISTATS): a *plain* free-rider returns the global model it received; a
*disguised* one adds Gaussian noise whose standard deviation decays as ``σ·t^−γ`` so its
update looks like the shrinking updates of converging honest clients. The stale-replay
free-rider needs its own earlier submissions and is a server-side coalition attack
(``agents.coalition.StaleReplayAttack``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from agents._behaviour import RoundContext, TrainingBehaviour
from agents._params import BaseParams
from agents._weights import Weights, check_pair, gaussian_like, is_float

__all__ = [
    "DisguisedFreeRiderBehaviour",
    "DisguisedFreeRiderParams",
    "FreeRiderBehaviour",
    "FreeRiderParams",
]


class FreeRiderParams(BaseParams):
    """``free_rider`` takes no parameters."""


class FreeRiderBehaviour(TrainingBehaviour):
    """Does not train; submits the global model unchanged (a zero update)."""

    name: ClassVar[str] = "free_rider"
    Params: ClassVar[type[FreeRiderParams]] = FreeRiderParams
    params: FreeRiderParams

    def __init__(self, params: FreeRiderParams | None = None) -> None:
        super().__init__(params)

    @property
    def trains(self) -> bool:
        return False

    def transform_update(
        self,
        global_weights: Sequence[np.ndarray],
        local_weights: Sequence[np.ndarray],
        ctx: RoundContext,
    ) -> Weights:
        check_pair(global_weights, local_weights)
        return [np.array(g, copy=True) for g in global_weights]


class DisguisedFreeRiderParams(BaseParams):
    """Parameters of ``disguised_free_rider``: noise ``σ·t^−γ`` in round ``t``."""

    sigma: float = Field(default=1e-3, gt=0.0)
    gamma: float = Field(default=1.0, ge=0.0)


class DisguisedFreeRiderBehaviour(TrainingBehaviour):
    """Does not train; submits ``w_global + N(0, (σ·t^−γ)²)`` on every float parameter."""

    name: ClassVar[str] = "disguised_free_rider"
    Params: ClassVar[type[DisguisedFreeRiderParams]] = DisguisedFreeRiderParams
    params: DisguisedFreeRiderParams

    def __init__(self, params: DisguisedFreeRiderParams | None = None) -> None:
        super().__init__(params)

    @property
    def trains(self) -> bool:
        return False

    def noise_std(self, round: int) -> float:
        """The noise standard deviation ``σ·t^−γ`` in round ``t = round`` (from 1)."""
        if round < 1:
            raise ValueError(f"round must be >= 1, got {round}")
        return float(self.params.sigma * round ** (-self.params.gamma))

    def transform_update(
        self,
        global_weights: Sequence[np.ndarray],
        local_weights: Sequence[np.ndarray],
        ctx: RoundContext,
    ) -> Weights:
        check_pair(global_weights, local_weights)
        std = self.noise_std(ctx.round)
        return [
            g + gaussian_like(g, std, ctx.rng) if is_float(g) else np.array(g, copy=True)
            for g in global_weights
        ]
