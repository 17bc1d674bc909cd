"""The one cost model: what taking part in a round costs a participant, in tokens.

The run records it (``cost`` rows, which net profit subtracts) and rational
participants decide from it (``MarketView.expected_cost``), so the decision and
the reported profit use the same economy: compute when the client trains (a flat
``market.compute_cost_per_round`` plus ``market.compute_cost_per_example`` per
row and epoch trained, so more effort costs more), and the ε it spends priced at
``market.price_per_epsilon``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass

from simulation.config.schema import MarketConfig
from simulation.world.accounting import ClientPrivacy
from simulation.world.identities import IdentityBook
from simulation.world.population import Population

__all__ = ["CostModel", "examples_processed", "round_cost"]


def examples_processed(rows: int, epochs: int, *, local_steps: int | None, batch_size: int) -> int:
    """The examples a client trains on in a round, which its compute time and cost are
    of: ``rows`` × local ``epochs``, or under ``training.local_steps`` that many
    minibatches of ``min(batch_size, rows)`` rows (``FreshMinibatches``; the epochs
    then do not apply). The screen (what the run records) and :class:`CostModel`
    (what a rational participant expects) both count with this, so they agree."""
    if local_steps is not None:
        return local_steps * min(batch_size, rows)
    return rows * epochs


def round_cost(
    cfg: MarketConfig, *, trained: bool, epsilon_spent: float, processed: int = 0
) -> float:
    """A round's cost: if the client trained, ``compute_cost_per_round`` plus
    ``compute_cost_per_example`` × the examples it ``processed`` (:func:`examples_processed`);
    plus ``price_per_epsilon`` × the ε it spent."""
    compute = (
        cfg.compute_cost_per_round + cfg.compute_cost_per_example * processed if trained else 0.0
    )
    return compute + cfg.price_per_epsilon * epsilon_spent


@dataclass
class CostModel:
    """The expected cost of an identity's next round, as the run will record it.

    ``rows_of(slot)`` is how many rows the slot's task trains on (its behaviour's data
    fraction applied), the rows the cost and the DP step are of; ``local_steps`` and
    ``batch_size`` are ``training``'s, as the screen has them."""

    cfg: MarketConfig
    identities: IdentityBook
    privacy: ClientPrivacy | None
    base_epochs: int
    population: Population
    rows_of: Callable[[int], int]
    _: KW_ONLY
    local_steps: int | None
    batch_size: int

    def expected_cost(self, account: str, epochs: int | None = None) -> float:
        """The cost of ``account``'s next round training ``epochs`` local epochs
        (``None``: the effort it chose, else ``training.epochs``); under
        ``local_steps`` the rows trained do not depend on the epochs."""
        slot = self.identities.slot(account)
        if slot is None:
            return round_cost(self.cfg, trained=True, epsilon_spent=0.0)
        chosen = (
            epochs if epochs is not None else self.population.effort.get(slot, self.base_epochs)
        )
        run = self.population.epochs_at(slot, chosen)
        spent = 0.0
        if self.privacy is not None:
            step = self.privacy.planned_step(slot, run)
            spent = self.privacy.would_spend(account, step) - self.privacy.spent(account)
        processed = examples_processed(
            self.rows_of(slot), run, local_steps=self.local_steps, batch_size=self.batch_size
        )
        return round_cost(self.cfg, trained=True, epsilon_spent=spent, processed=processed)
