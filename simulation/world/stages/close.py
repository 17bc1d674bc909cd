"""Closing a round: attack metrics from ground truth, the sealed block, the round's record."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from marketplace import TOKEN, Market
from simulation import names
from simulation.world.accounting import ClientPrivacy, owner_epsilon
from simulation.world.context import Federation, Recorder, RoundContext
from simulation.world.market_process import RoundSignal
from simulation.world.population import Population
from simulation.world.records import RoundRecord

__all__ = ["AttackMetrics", "CloseRound", "SignalRoundClosed", "attacker_identities"]


def attacker_identities(population: Population) -> set[str]:
    """Every identity of every attacking client (ground truth): a whitewasher's fresh
    identities are the same attacker."""
    book = population.identities
    current = set(population.attackers())
    attacking_slots = {book.slot(a) for a in current}
    return {a for slot in attacking_slots if slot is not None for a in book.of_slot(slot)}


class AttackMetrics:
    """Per-round attack metrics from ground truth (never shown to mechanisms): the
    attackers' cumulative share of tokens and honest participants' mean net profit.

    The attackers are the attacking data owners, the set ``summary.csv`` and the group
    columns' ``total:attackers`` use (``simulation.results.groups.Truth.attacker_owners``):
    owners of training attackers (every identity they used) and of members of attacking
    market behaviours (a colluding cabal, whitewashers), so a cabal member who trains
    honestly is an attacker here too. Every identity of such an owner counts."""

    name: ClassVar[str] = "attack_metrics"

    def __init__(self, population: Population, fed: Federation, rec: Recorder) -> None:
        self.population = population
        self.fed = fed
        self.rec = rec
        self.earned: dict[str, float] = {}
        self.cost: dict[str, float] = {}
        self._tallied = 0  # rows are append-only: only new rows are added up
        self._market: set[str] | None = None
        """Members of attacking market behaviours: fixed by the scenario, found once."""

    def _tally(self) -> None:
        for row in self.rec.rows[self._tallied :]:
            if row.metric in names.TOKEN_METRICS:
                self.earned[row.client] = self.earned.get(row.client, 0.0) + row.value
            elif row.metric == names.COST:
                self.cost[row.client] = self.cost.get(row.client, 0.0) + row.value
        self._tallied = len(self.rec.rows)

    def attacker_owners(self) -> set[str]:
        """The attacking data owners now (training attackers' and market attackers')."""
        if self._market is None:
            self._market = {
                a for members in self.population.market_attackers().values() for a in members
            }
        book = self.population.identities
        return {book.owner(a) for a in attacker_identities(self.population) | self._market}

    def run(self, ctx: RoundContext) -> None:
        self._tally()
        owners = self.attacker_owners()
        owner = self.population.identities.owner
        total = sum(self.earned.values())
        if total > 0:
            share = sum(v for a, v in self.earned.items() if owner(a) in owners) / total
            self.rec.add(ctx.round, names.GLOBAL, names.ATTACKER_TOKEN_SHARE, share)
        honest = [a for a in self.fed.identities.currents() if owner(a) not in owners]
        if honest:
            profit = float(
                np.mean([self.earned.get(a, 0.0) - self.cost.get(a, 0.0) for a in honest])
            )
            self.rec.add(ctx.round, names.GLOBAL, names.HONEST_PROFIT, profit)


@dataclass
class CloseRound:
    """Seal the round's ledger block with a signed checkpoint and record the round."""

    name: ClassVar[str] = "close"

    market: Market
    fed: Federation
    rec: Recorder
    privacy: ClientPrivacy | None
    clock: Callable[[], float]
    on_round: Callable[[RoundRecord], None] | None = None

    def run(self, ctx: RoundContext) -> None:
        self.market.end_block()
        # ε is per data owner (ground truth): every identity that trained on its rows.
        eps = list(owner_epsilon(self.privacy, self.fed.identities).values()) or [0.0]
        record = RoundRecord(
            round=ctx.round,
            time=self.clock(),
            duration=ctx.duration,
            sampled=len(ctx.sampled),
            accepted=len(ctx.accepted),
            rejected=len(ctx.rejected),
            active_clients=len(self.fed.active),
            test_accuracy=ctx.test["accuracy"],
            test_loss=ctx.test["loss"],
            epsilon_max=max(eps),
            epsilon_mean=float(np.mean(eps)),
            tokens_issued=ctx.issued / TOKEN,
            dropped=len(ctx.dropped),
            stragglers=ctx.stragglers,
            backdoor_success=ctx.backdoor_success,
            royalties_paid=ctx.royalties,
            model_version=self.fed.version,
            **self._client_epsilon(ctx),
            reference_se_ratio=ctx.reference_se_ratio,
            wall_seconds=time.perf_counter() - ctx.wall_start,
            aggregation_failed=ctx.failure is not None,
        )
        self.rec.rounds.append(record)
        if self.on_round is not None:
            self.on_round(record)

    @staticmethod
    def _client_epsilon(ctx: RoundContext) -> dict[str, float]:
        if ctx.client_epsilon is None:
            return {}
        one, cumulative = ctx.client_epsilon
        return {names.CLIENT_EPSILON_ROUND: one, names.CLIENT_EPSILON: cumulative}


@dataclass
class SignalRoundClosed:
    """Wake the market processes waiting for a round to close (rational participants
    deciding on the next round from this one's pay), and let them act before the next
    round is sampled; nothing after the last round, or with no one waiting."""

    name: ClassVar[str] = "signal_round_closed"

    signal: RoundSignal
    rounds: int

    def run(self, ctx: RoundContext) -> float | None:
        if ctx.round < self.rounds and self.signal.fire():
            return 0.0
        return None
