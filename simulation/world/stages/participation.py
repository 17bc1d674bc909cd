"""Who takes part in a round: privacy budgets, sampling and dropouts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from agents.market import Availability
from marketplace import Market
from simulation.config.schema import ClientsConfig
from simulation.fl.privacy import Step
from simulation.rng import SeedTree
from simulation.world.accounting import ClientPrivacy
from simulation.world.context import Federation, RoundContext
from simulation.world.population import Population

__all__ = ["SampleClients", "StopExhausted"]

log = logging.getLogger("fedmarket.world")


@dataclass
class StopExhausted:
    """Clients whose next round would take their *data owner* past the ε budget stop
    contributing (recorded on the ledger as ``privacy_budget_exhausted``).

    The check predicts each task's exact (σ, q, steps) (:meth:`ClientPrivacy.planned_step`)
    and composes it into the owner's accountant. Identities of one owner (Sybils) are
    admitted in slot order, each on top of the steps of those already admitted this
    round, since all of them may be sampled and train on the owner's rows. The ledger
    entry carries the identity's own ε (the owner link is ground truth)."""

    name: ClassVar[str] = "stop_exhausted"

    privacy: ClientPrivacy | None
    population: Population
    fed: Federation
    market: Market
    base_epochs: int

    def run(self, ctx: RoundContext) -> None:
        privacy = self.privacy
        if privacy is None or privacy.budget is None:
            return
        budget = privacy.budget
        admitted: dict[str, tuple[Step, ...]] = {}
        for c in sorted(self.fed.active):
            epochs = self.population.epochs(c, ctx.round, ctx.start, self.base_epochs)
            account = self.fed.account(c)
            owner = privacy.owner_of(account)
            step = privacy.planned_step(c, epochs, ctx.round, ctx.start)
            planned = (*admitted.get(owner, ()), step)
            owner_next = privacy.owner_would_spend(account, planned)
            if owner_next <= budget:
                admitted[owner] = planned
                continue
            self.fed.active.discard(c)
            self.fed.stopped.add(c)
            self.market.record(
                "privacy_budget_exhausted",
                {
                    "round": ctx.round,
                    "client": account,
                    "epsilon_spent": privacy.spent(account),
                    "epsilon_next": privacy.would_spend(account, step),
                    "budget": budget,
                    "budget_of": "data_owner",
                },
            )
            log.info(
                "%s stops: its owner's next round would reach ε=%.3f > budget %.3f",
                account,
                owner_next,
                budget,
            )


@dataclass
class SampleClients:
    """Sample the round's clients with the scenario's RNG from those present (timeline
    join/leave, market Leave/Join), decide dropouts, and announce the round."""

    name: ClassVar[str] = "sample"

    cfg: ClientsConfig
    tree: SeedTree
    population: Population
    fed: Federation
    market: Market
    num_classes: int
    availability: Mapping[int, Availability] = field(default_factory=dict)
    """Churn members' per-round dropout and straggler rates (``churn`` market behaviour)."""
    enrol: Callable[[Sequence[int]], None] | None = None
    """Registers, grants and stakes clients on their first sampling (the run's
    :class:`~simulation.world.market_setup.Enrolment`)."""

    def eligible(self, ctx: RoundContext) -> list[int]:
        absent = self.population.absent_now(ctx.round, ctx.start)
        return sorted(self.fed.active - absent - self.fed.departed)

    def run(self, ctx: RoundContext) -> None:
        eligible = self.eligible(ctx)
        ctx.eligible = len(eligible)
        if eligible:
            k = self.cfg.per_round(len(eligible))
            rng = self.tree.numpy("sample", ctx.round)
            ctx.sampled = sorted(int(c) for c in rng.choice(eligible, size=k, replace=False))
        if self.enrol is not None:
            self.enrol(ctx.sampled)
        ctx.dropped = [c for c in ctx.sampled if self._drops(ctx, c)]
        self.market.record(
            "round_started",
            {
                "round": ctx.round,
                "sampled": [self.fed.account(c) for c in ctx.sampled],
                "dropped_out": [self.fed.account(c) for c in ctx.dropped],
            },
        )

    def _drops(self, ctx: RoundContext, c: int) -> bool:
        """Dropout by behaviour or timeline event, then by churn availability (whose
        straggler slowdown, drawn at the same time, stretches the client's time)."""
        dropped = self.population.drops_out(c, ctx.round, ctx.start, self.num_classes)
        avail = self.availability.get(c)
        if avail is not None:
            churn_drop, slowdown = avail.sample(self.tree.numpy("availability", c, ctx.round))
            if slowdown != 1.0:
                ctx.slowdowns[c] = slowdown
            dropped = dropped or churn_drop
        return dropped
