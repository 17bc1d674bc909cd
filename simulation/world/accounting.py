"""Sample-level DP bookkeeping on the server: each client's noise, budget and ε.

The server calibrates every client's σ (given, or so that training every round
ends at the target ε with that client's own sample rate and step count) and
composes the steps each reply reports into the identity's accountant.
"""

from __future__ import annotations

from collections.abc import Callable

from simulation.config.schema import DPSGDPrivacy, TrainingConfig
from simulation.fl.privacy import PrivacyLedger, Step, calibrate_noise, poisson_schedule

__all__ = ["ClientPrivacy"]


class ClientPrivacy:
    """σ per client, the per-identity accountant, and the budget a client stops at."""

    def __init__(
        self,
        dp: DPSGDPrivacy,
        training: TrainingConfig,
        rounds: int,
        size_of: Callable[[int], int],
    ) -> None:
        self.dp = dp
        self.training = training
        self.rounds = rounds
        self.size_of = size_of
        self.ledger = PrivacyLedger(dp.delta, dp.accountant)

    @property
    def budget(self) -> float | None:
        """The ε a client may not exceed (``budget``, else ``target_epsilon``)."""
        return self.dp.budget if self.dp.budget is not None else self.dp.target_epsilon

    def noise_for(self, client: int) -> float:
        """σ for ``client``: given, or calibrated to the target ε."""
        if self.dp.noise_multiplier is not None:
            return self.dp.noise_multiplier
        assert self.dp.target_epsilon is not None
        q, steps = poisson_schedule(self.size_of(client), self.training.batch_size)
        total = steps * self.training.epochs * self.rounds
        return calibrate_noise(self.dp.target_epsilon, self.dp.delta, q, total)

    def planned_step(self, client: int, epochs: int) -> Step:
        """The (σ, q, steps) of ``client``'s next round of ``epochs`` epochs."""
        q, steps = poisson_schedule(self.size_of(client), self.training.batch_size)
        return (self.noise_for(client), q, steps * epochs)

    def spent(self, account: str) -> float:
        return self.ledger.spent(account)

    def would_spend(self, account: str, step: Step) -> float:
        return self.ledger.would_spend(account, step)

    def record(self, account: str, step: Step) -> float:
        return self.ledger.record(account, step)
