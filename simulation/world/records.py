"""The world's plain outputs: round records, the run's result, the model as bytes.

Kept apart from ``simulation.world.core`` (and free of torch) so that a process
that only relays or writes results, such as the driver of a Flower run, does
not import the training stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RoundRecord", "Weights", "WorldResult", "safetensors_bytes"]

Weights = dict[str, np.ndarray]


def safetensors_bytes(weights: Weights) -> bytes:
    """The model as a safetensors file (the registered artifact)."""
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in weights.items()})


@dataclass
class RoundRecord:
    """What happened in one round (one row of ``rounds.parquet``)."""

    round: int
    time: float
    duration: float
    sampled: int
    accepted: int
    rejected: int
    active_clients: int
    test_accuracy: float
    test_loss: float
    epsilon_max: float
    epsilon_mean: float
    tokens_issued: float
    dropped: int = 0
    stragglers: int = 0
    royalties_paid: float = 0.0
    backdoor_success: float = float("nan")
    model_version: str | None = None
    wall_seconds: float = 0.0


@dataclass
class WorldResult:
    """Everything a run produced, for the results writer."""

    rounds: list[RoundRecord]
    client_rows: list[tuple[int, str, str, float]]
    final_weights: Weights
    head_hash: str
    ground_truth: dict[str, Any]
    final_epsilon: dict[str, float] = field(default_factory=dict)
    market: dict[str, float] = field(default_factory=dict)
    baseline_accuracy: list[float] | None = None
