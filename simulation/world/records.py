"""Typed records that cross the world's seams: client replies, metric rows, one row
per round, ground truth, market statistics, and a run's whole result."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from simulation.fl.messages import ReplyMetrics

if TYPE_CHECKING:
    from marketplace.ledger import LedgerSummary
    from simulation.fl.device import DeviceChoice
    from simulation.fl.evaluation import LatencyMeasurement
    from simulation.fl.federated import FederatedData

__all__ = [
    "GroundTruth",
    "MarketStats",
    "MetricRow",
    "Reply",
    "RoundRecord",
    "Transport",
    "Weights",
    "WorldResult",
]

Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class Reply:
    """One client's answer to a train message, independent of the transport.

    ``metrics`` is ``None`` when the client sent nothing usable; ``error`` says why
    (it becomes the rejection reason on the ledger).
    """

    client: int
    weights: Weights | None
    metrics: ReplyMetrics | None
    error: str | None = None
    signature: str | None = None
    """The node's own signature (hex) of its contribution entry, when asked for one
    (``ClientTask.sign``, ``--engine deployment``)."""

    @property
    def num_examples(self) -> int:
        return self.metrics.num_examples if self.metrics is not None else 0

    @property
    def steps(self) -> int:
        return self.metrics.steps if self.metrics is not None else 0

    @property
    def trained(self) -> bool:
        """Did the client train (take optimiser steps) for this reply?"""
        return self.steps > 0


# A transport sends tasks (with the global weights) and returns replies: Flower's
# grid on the Flower path, a direct call in the in-process loop.
Transport = Callable[[list[Any], Weights], list[Reply]]


class MetricRow(NamedTuple):
    """One long-form metric: ``(round, client, metric, value)``; ``client`` is an
    account or ``simulation.names.GLOBAL``."""

    round: int
    client: str
    metric: str
    value: float


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
    client_epsilon_round: float = float("nan")
    """Client-level DP (``aggregation.client_dp``): this round's ε alone (NaN without)."""
    client_epsilon: float = float("nan")
    """Client-level DP: the cumulative ε over the rounds released so far (NaN without)."""
    reference_se_ratio: float = float("nan")
    """Monte Carlo reference rounds: the largest standard error over its target (> 1:
    missed, kept under ``contribution.on_imprecise: record``); NaN otherwise."""
    wall_seconds: float = 0.0
    aggregation_failed: bool = False
    """Aggregation produced no model: no version was registered, no emission paid."""


@dataclass(frozen=True)
class GroundTruth:
    """Who attacks, as ``ground_truth.json`` records it. Never shown to mechanisms.

    ``attackers`` lists every identity an attacking data owner used;
    ``behaviours`` maps each identity to its training behaviour; ``groups`` the
    population groups' members; ``identities`` an owner's identities when it has
    more than one (a whitewasher's fresh names, a Sybil group's identities);
    ``owners`` every identity's data owner; ``roles`` every identity's attack role
    (``"honest"``, or ``+``-joined parts: ``sybil``, its coalition attack or
    attacking training behaviour, the attacking market behaviours it belongs to),
    what figures colour by and outcomes group by.
    """

    attackers: tuple[str, ...]
    behaviours: dict[str, str]
    groups: dict[str, list[str]]
    coalitions: tuple[dict[str, str], ...]
    market_attackers: dict[str, list[str]]
    identities: dict[str, list[str]] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        # The fields themselves, not ``asdict``'s deep copy (~0.7 s for the 300,000
        # strings of a 100,000-client run): json.dumps only reads them.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["attackers"] = list(self.attackers)
        data["coalitions"] = list(self.coalitions)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class MarketStats:
    """The market's aggregates for the manifest: intent counters (licences, revenue,
    fraud, votes, ...) and the rating shift colluding voters caused."""

    counters: dict[str, float] = field(default_factory=dict)
    rating_shift_mean: float | None = None
    rating_shift_abs_mean: float | None = None
    rating_shift_own_mean: float | None = None
    """On the versions a colluding cabal holds (the ones it stuffs)."""
    rating_shift_other_mean: float | None = None
    """On every other voted version (the ones a cabal bad-mouths)."""

    def as_dict(self) -> dict[str, float]:
        out = dict(self.counters)
        for name in (
            "rating_shift_mean",
            "rating_shift_abs_mean",
            "rating_shift_own_mean",
            "rating_shift_other_mean",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass
class WorldResult:
    """Everything a run produced, for the results writer."""

    rounds: list[RoundRecord]
    rows: list[MetricRow]
    final_weights: Weights
    head_hash: str
    ground_truth: GroundTruth
    final_epsilon: dict[str, float] = field(default_factory=dict)
    """Each identity's own cumulative ε (what the ledger records; empty without DP)."""
    owner_epsilon: dict[str, float] = field(default_factory=dict)
    """Each data owner's cumulative ε over all its identities (ground truth)."""
    grad_sample_mode: str | None = None
    """The per-sample clipping implementation DP-SGD ran with (``auto`` resolved)."""
    market: MarketStats = field(default_factory=MarketStats)
    baseline_accuracy: list[float] | None = None
    data: FederatedData | None = None
    device: DeviceChoice | None = None
    version_weights: dict[str, bytes] = field(default_factory=dict)
    """Safetensors bytes per version id (``output.keep_versions``; else empty)."""
    latency: LatencyMeasurement | None = None
    """Timed inference of the final model (machine-dependent; never signed)."""
    ledger: LedgerSummary | None = None
    """The closed ledger's id, size, head, root and content digest (for the manifest)."""

    @property
    def final(self) -> RoundRecord:
        return self.rounds[-1]


def finite_or_none(value: float) -> float | None:
    """``value``, or ``None`` when it is NaN or infinite (JSON has no NaN)."""
    return value if math.isfinite(value) else None
