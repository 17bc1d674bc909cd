"""The honest client, with system-heterogeneity knobs.

Honest clients differ in how much data they use, how long and how fast they train and how
often they vanish (Li et al. 2020, "Federated optimization in heterogeneous networks";
Bonawitz et al. 2019, "Towards federated learning at scale"). The knobs live here so a
scenario can make any client a straggler; label skew is the partitioner's job.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from pydantic import Field

from agents._behaviour import Heterogeneity, RoundContext, TrainingBehaviour, _check_xy
from agents._params import BaseParams

__all__ = ["HonestBehaviour", "HonestParams"]


class HonestParams(BaseParams):
    """Parameters of ``honest``. All defaults give a plain FedAvg client."""

    data_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    local_epoch_multiplier: float = Field(default=1.0, gt=0.0)
    compute_speed: float = Field(default=1.0, gt=0.0)
    dropout_prob: float = Field(default=0.0, ge=0.0, lt=1.0)


class HonestBehaviour(TrainingBehaviour):
    """Trains on (a fraction of) its data and submits the result unchanged."""

    name: ClassVar[str] = "honest"
    Params: ClassVar[type[HonestParams]] = HonestParams
    params: HonestParams

    def __init__(self, params: HonestParams | None = None) -> None:
        super().__init__(params)

    @property
    def heterogeneity(self) -> Heterogeneity:
        p = self.params
        return Heterogeneity(
            data_fraction=p.data_fraction,
            local_epoch_multiplier=p.local_epoch_multiplier,
            compute_speed=p.compute_speed,
            dropout_prob=p.dropout_prob,
        )

    def train_rows(self, num_examples: int) -> int:
        """``ceil(data_fraction × n)`` rows (at least one), or all of them."""
        if self.params.data_fraction >= 1.0 or num_examples == 0:
            return num_examples
        return max(1, math.ceil(self.params.data_fraction * num_examples - 1e-9))

    def prepare_data(
        self, x: np.ndarray, y: np.ndarray, ctx: RoundContext
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keep ``ceil(data_fraction × n)`` samples drawn from ``ctx.rng``, in original order.

        The subset is redrawn each round from the round's generator; the simulation must not
        subsample a second time.
        """
        _check_xy(x, y)
        n = y.shape[0]
        if self.params.data_fraction >= 1.0 or n == 0:
            return x, y
        keep = self.train_rows(n)
        idx = np.sort(ctx.rng.choice(n, size=keep, replace=False))
        return x[idx], y[idx]
