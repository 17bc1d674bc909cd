"""Sending the round's tasks and letting server-side coalitions rewrite replies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from simulation.world.context import Federation, RoundContext
from simulation.world.population import Population
from simulation.world.records import Reply, Transport
from simulation.world.screening import check_update
from simulation.world.tasks import TaskBuilder

__all__ = ["ApplyCoalitions", "Dispatch"]


@dataclass
class Dispatch:
    """Send each asked client its ``ClientTask`` with the global model; replies come
    back sorted by client (the transport is Flower's grid or the in-process loop)."""

    name: ClassVar[str] = "dispatch"

    tasks: TaskBuilder
    transport: Transport
    fed: Federation

    def run(self, ctx: RoundContext) -> None:
        asked = ctx.asked
        if not asked:
            ctx.replies = []
            return
        tasks = self.tasks.build(ctx.round, asked, self.fed, ctx.start)
        ctx.replies = sorted(self.transport(tasks, self.fed.weights), key=lambda r: r.client)


@dataclass
class ApplyCoalitions:
    """Server-side coalition attacks (ALIE, update copying, stale replay, Sybil
    duplicates) rewrite their members' well-formed submissions."""

    name: ClassVar[str] = "coalitions"

    population: Population
    fed: Federation

    def run(self, ctx: RoundContext) -> None:
        if not self.population.coalitions:
            return
        well_formed = {
            r.client: r.weights
            for r in ctx.replies
            if r.error is None
            and r.weights is not None
            and check_update(self.fed.weights, r.weights, float("inf")) is None
        }
        rewritten = self.population.apply_coalitions(
            ctx.round, ctx.start, well_formed, self.fed.weights
        )
        ctx.replies = [
            Reply(r.client, rewritten[r.client], r.metrics, r.error) if r.client in rewritten else r
            for r in ctx.replies
        ]
