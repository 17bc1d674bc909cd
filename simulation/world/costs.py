"""The one cost model: what taking part in a round costs a participant, in tokens.

The run records it (``cost`` rows, which net profit subtracts) and rational
participants decide from it (``MarketView.expected_cost``), so the decision and
the reported profit use the same economy: compute when the client trains, and the
ε it spends priced at ``market.price_per_epsilon``.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulation.config.schema import MarketConfig
from simulation.world.accounting import ClientPrivacy
from simulation.world.identities import IdentityBook

__all__ = ["CostModel", "round_cost"]


def round_cost(cfg: MarketConfig, *, trained: bool, epsilon_spent: float) -> float:
    """A round's cost: ``compute_cost_per_round`` if the client trained, plus
    ``price_per_epsilon`` × the ε it spent."""
    compute = cfg.compute_cost_per_round if trained else 0.0
    return compute + cfg.price_per_epsilon * epsilon_spent


@dataclass
class CostModel:
    """The expected cost of an identity's next round, as the run will record it."""

    cfg: MarketConfig
    identities: IdentityBook
    privacy: ClientPrivacy | None
    base_epochs: int

    def expected_cost(self, account: str) -> float:
        spent = 0.0
        slot = self.identities.slot(account)
        if self.privacy is not None and slot is not None:
            step = self.privacy.planned_step(slot, self.base_epochs)
            spent = self.privacy.would_spend(account, step) - self.privacy.spent(account)
        return round_cost(self.cfg, trained=True, epsilon_spent=spent)
