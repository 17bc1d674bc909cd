"""User-level DP-FedAvg (McMahan, Ramage, Talwar & Zhang, "Learning Differentially
Private Recurrent Language Models", ICLR 2018) and its client-level accountant.

Each round the world samples a fixed number ``m`` of clients, uniformly without
replacement, out of the ``N`` eligible ones. Every update ``Δ_i = w_i − w_global``
is clipped to L2 norm ``C`` (FlatClip), the clipped updates are summed and
divided by ``m`` — the number *sampled*, not the number that replied: a client
that dropped out or whose update the server rejected counts as a zero update —
and Gaussian noise with standard deviation ``σ · C / m`` is added per
coordinate. That is the paper's fixed-denominator estimator ``f̃_f`` with equal
weights ``w_k = 1`` (Algorithm 1, ``W = qN = m``); the example-weighted variant
is not offered.

Why the denominator is fixed: with a data-dependent denominator (the replies
that survived screening) one client's update changes the scale of every other's
and the sensitivity is no longer ``C / m``.

Accounting. Sampling a fixed ``m`` keeps ``N`` public, so the neighbouring
relation is *replace one client* (dp-accounting's ``SampledWithoutReplacementDpEvent``
is only defined for ``REPLACE_ONE``). Replacing one client's data moves its
clipped update anywhere in the ball of radius ``C``, so the L2 sensitivity of
the sum is ``2C`` and the noise multiplier in dp-accounting's convention
(noise std / L2 sensitivity, ``GaussianDpEvent``) is ``σC / 2C = σ / 2``; the
library's own code makes the same halving for replace-one
(``pld.privacy_loss_distribution``: ``standard_deviation=noise_multiplier / 2``).
Rounds compose in dp-accounting's RDP accountant (Wang, Balle & Kasiviswanathan
2019, Theorem 27 for sampling without replacement). McMahan et al. account with
Poisson sampling and add/remove-one instead; our ε is for the sampling the world
actually does.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg

from simulation.fl.strategies import (
    FLOWER_BASE,
    Cohort,
    NeedsGlobal,
    Weights,
    _reply_weights,
    _to_record,
)
from simulation.fl.weights import flatten, unflatten

__all__ = ["ClientEpsilon", "ClientLevelAccountant", "DPFedAvg", "clip_update", "dp_event"]

log = logging.getLogger("fedmarket.client_dp")

ACCOUNTANT = "dp-accounting RDP, sampling without replacement, replace-one"
"""How the client-level ε is computed (recorded in the manifest)."""


def clip_update(delta: np.ndarray, clipping_norm: float) -> np.ndarray:
    """FlatClip: ``Δ · min(1, C / ‖Δ‖₂)`` (a zero update stays zero)."""
    norm = float(np.linalg.norm(delta))
    return delta * (clipping_norm / norm) if norm > clipping_norm else delta


def dp_event(population: int, sampled: int, noise_multiplier: float) -> Any:
    """One round as a dp-accounting event: ``sampled`` of ``population`` clients
    without replacement, then the Gaussian mechanism on the clipped sum, whose
    replace-one sensitivity is ``2C`` (hence the noise multiplier ``σ / 2``)."""
    import dp_accounting

    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier / 2.0)
    return dp_accounting.SampledWithoutReplacementDpEvent(population, sampled, gaussian)


@dataclass(frozen=True)
class ClientEpsilon:
    """A round's client-level ε alone, and the run's cumulative ε after it."""

    round: float
    cumulative: float


@cache
def _one_round_rdp(population: int, sampled: int, noise_multiplier: float) -> tuple[Any, Any]:
    """dp-accounting's RDP curve (orders, RDP) of one round: computing it takes about a
    second (Theorem 27 is O(α²) per order), so each distinct round is computed once."""
    from dp_accounting import NeighboringRelation
    from dp_accounting.rdp import RdpAccountant

    acc = RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_ONE)
    acc.compose(dp_event(population, sampled, noise_multiplier))
    return acc.orders, acc.rdp


class ClientLevelAccountant:
    """Client-level (ε, δ) over the rounds released so far, from dp-accounting's RDP
    accountant: RDP adds up over rounds (each distinct ``(N, m)`` is one event,
    composed as often as it occurred) and ``dp_accounting.rdp.compute_epsilon``
    converts the total, exactly as ``RdpAccountant.get_epsilon`` does."""

    def __init__(self, noise_multiplier: float, delta: float) -> None:
        if not noise_multiplier > 0.0:
            raise ValueError(f"noise_multiplier must be positive, got {noise_multiplier!r}")
        self.noise_multiplier = float(noise_multiplier)
        self.delta = float(delta)
        self.counts: dict[tuple[int, int], int] = {}
        self.cumulative = 0.0

    @property
    def rounds(self) -> int:
        """Rounds composed so far."""
        return sum(self.counts.values())

    def _epsilon(self, events: dict[tuple[int, int], int]) -> float:
        from dp_accounting.rdp import compute_epsilon

        orders, total = None, 0.0
        for (n, m), count in sorted(events.items()):
            orders, rdp = _one_round_rdp(n, m, self.noise_multiplier)
            total = total + count * rdp
        return float(compute_epsilon(orders, total, self.delta)[0])

    def record(self, population: int, sampled: int) -> ClientEpsilon:
        """Compose one released round of ``sampled`` out of ``population`` clients."""
        if not 1 <= sampled <= population:
            raise ValueError(f"a round samples 1..{population} clients, not {sampled}")
        key = (int(population), int(sampled))
        self.counts[key] = self.counts.get(key, 0) + 1
        self.cumulative = self._epsilon(self.counts)
        return ClientEpsilon(self._epsilon({key: 1}), self.cumulative)


class DPFedAvg(NeedsGlobal, FedAvg):
    """User-level DP-FedAvg: clip to ``C``, sum, divide by the ``m`` sampled, add
    ``N(0, (σC/m)²)`` per coordinate (see the module docstring).

    The world calls, every round: :meth:`prepare` (the round's eligible and sampled
    counts, :meth:`set_cohort`, then its global model, ``set_global``), then
    ``aggregate_train`` with the accepted replies (possibly none: the round is still released, as
    noise around the current model, so whether anyone was accepted is covered
    too). ``last_epsilon`` is the round's :class:`ClientEpsilon` (``None``
    before the first release or after a round with nobody sampled).
    """

    def __init__(
        self,
        noise_multiplier: float,
        clipping_norm: float,
        delta: float,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(**FLOWER_BASE)
        self.noise_multiplier = float(noise_multiplier)
        self.clipping_norm = float(clipping_norm)
        self.accountant = ClientLevelAccountant(noise_multiplier, delta)
        self._rng = rng if rng is not None else np.random.default_rng(0)
        self._cohort: tuple[int, int] | None = None
        self.last_epsilon: ClientEpsilon | None = None

    def __repr__(self) -> str:
        return f"DPFedAvg(noise_multiplier={self.noise_multiplier}, C={self.clipping_norm})"

    def what_if(self) -> DPFedAvg:
        """A copy to aggregate a hypothetical set of replies with: it draws the noise
        this strategy's next round will draw (a copy of the generator's state) and
        records nothing in the accountant it shares with this one."""
        fork = copy.copy(self)
        fork._rng = copy.deepcopy(self._rng)
        fork._accounting = False
        return fork

    _accounting: bool = True

    def set_cohort(self, population: int, sampled: int) -> None:
        """The round samples ``sampled`` of ``population`` eligible clients."""
        self._cohort = (int(population), int(sampled))
        self.last_epsilon = None

    def prepare(self, global_weights: Weights, cohort: Cohort | None) -> None:
        """The round's hook: its cohort first (the sampling rate this release is
        accounted at), then its global model."""
        if cohort is None:
            raise ValueError(
                "DPFedAvg.prepare needs the round's cohort (eligible, sampled): "
                "client-level DP is accounted at the sampling rate"
            )
        self.set_cohort(cohort.eligible, cohort.sampled)
        super().prepare(global_weights, cohort)

    def client_epsilon(self) -> tuple[float, float]:
        """The round's ``(ε, cumulative ε)`` (:class:`~simulation.fl.strategies.ClientPrivate`)."""
        last = self.last_epsilon
        return (
            (last.round, last.cumulative) if last is not None else (0.0, self.accountant.cumulative)
        )

    def noise_std(self, sampled: int) -> float:
        """``σ · C / m``: the noise on the average, calibrated to its sensitivity ``C / m``."""
        return self.noise_multiplier * self.clipping_norm / sampled

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Clip, sum, divide by the number sampled, add noise; account the round."""
        if self._cohort is None:
            raise RuntimeError("DPFedAvg.set_cohort(population, sampled) must come first")
        population, sampled = self._cohort
        replies = list(replies)
        if len(replies) > sampled:
            raise ValueError(
                f"round {server_round}: {len(replies)} replies but only {sampled} clients sampled"
            )
        glob = self._require_global()
        keys = list(glob)
        g = flatten(glob, keys)
        total = np.zeros_like(g)
        for msg in replies:
            total += clip_update(flatten(_reply_weights(msg, keys), keys) - g, self.clipping_norm)
        std = self.noise_std(sampled)
        noisy = g + total / sampled + self._rng.normal(0.0, std, g.shape)
        if not self._accounting:
            return _to_record(unflatten(noisy, glob)), MetricRecord({"num-examples": sampled})
        self.last_epsilon = self.accountant.record(population, sampled)
        log.debug(
            "round %d: DP-FedAvg over %d of %d sampled (N=%d), noise std %.6g, ε=%.4g",
            server_round,
            len(replies),
            sampled,
            population,
            std,
            self.last_epsilon.cumulative,
        )
        return _to_record(unflatten(noisy, glob)), MetricRecord({"num-examples": sampled})
