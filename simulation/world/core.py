"""The market world: a simpy clock on which federated rounds and the economy run.

The world owns three things: the simulated clock (a simpy ``Environment``), the
seed tree, and the order of a round's stages (``default_stages``: sample →
dispatch → screen → account privacy → score → aggregate → register → reward →
settle → record). Everything else is a typed part built once per run
(:mod:`simulation.world.setup`). Federated training is one simpy process that
runs the stages round after round; market processes (buyers, voters, cabals,
churn, ...) run beside it on the same clock and end when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from functools import partial
from pathlib import Path
from typing import Any

import simpy

from marketplace import Keyring, LedgerSummary
from simulation.config.schema import Scenario
from simulation.errors import RunInterrupted
from simulation.rng import SeedTree
from simulation.world.accounting import identity_epsilon, owner_epsilon
from simulation.world.context import RoundContext
from simulation.world.costs import CostModel
from simulation.world.market_process import RoundSignal
from simulation.world.market_setup import market_stats, start_market_processes_for
from simulation.world.records import GroundTruth, RoundRecord, Transport, WorldResult
from simulation.world.setup import Parts, build_parts, default_stages
from simulation.world.stages import Stage, attacker_identities
from simulation.world.tasks import trained_rows

__all__ = ["StageFactory", "World"]

StageFactory = Callable[[Parts, Callable[[RoundRecord], None] | None], list[Stage]]
"""Builds a round's stages over a run's parts (default: ``default_stages``)."""


class World:
    """One scenario's market and federation on a simpy clock."""

    def __init__(
        self,
        scenario: Scenario,
        out_dir: Path,
        transport: Transport,
        on_round: Callable[[RoundRecord], None] | None = None,
        stages: StageFactory = default_stages,
        keyring: Keyring | None = None,
        node_signed: bool = False,
    ) -> None:
        self.scenario = scenario
        self.node_signed = node_signed
        """Each node signs its own contributions (``--engine deployment``)."""
        self.keyring = keyring
        """Signs the ledger; ``None``: the default keyring (``Keyring.load_or_create()``)."""
        self.out_dir = out_dir
        self.transport = transport
        self.on_round = on_round
        self.make_stages = stages
        self.tree = SeedTree(scenario.seed)
        self.env = simpy.Environment()
        self._failure: BaseException | None = None

    def now(self) -> float:
        return float(self.env.now)

    def _federation(self, stages: list[Stage]) -> Generator[simpy.Event, Any, None]:
        try:
            for r in range(1, self.scenario.rounds + 1):
                ctx = RoundContext(round=r, start=self.now(), wall_start=time.perf_counter())
                for stage in stages:
                    delay = stage.run(ctx)
                    if delay is not None:
                        yield self.env.timeout(delay)
        except Exception as exc:
            # simpy re-creates a process's exception from its args, which loses typed
            # errors' fields; keep the original and raise it after the clock stops.
            self._failure = exc

    def run(self) -> WorldResult:
        """Run the whole scenario; the ledger is closed (and verifiable) whatever happens."""
        import torch

        torch.set_num_threads(1)
        keyring = self.keyring if self.keyring is not None else Keyring.load_or_create()
        parts = build_parts(
            self.scenario,
            self.out_dir,
            self.tree,
            self.now,
            self.transport,
            keyring,
            self.node_signed,
        )
        try:
            parts.rec.rounds.append(initial_record(parts))
            costs = CostModel(
                self.scenario.market,
                parts.fed.identities,
                parts.privacy,
                self.scenario.training.epochs,
                parts.population,
                partial(trained_rows, parts.population, parts.data),
                local_steps=self.scenario.training.local_steps,
                batch_size=self.scenario.training.batch_size,
            )
            parts.round_signal = RoundSignal(self.env)
            parts.applier = start_market_processes_for(
                self.env,
                parts.market,
                self.scenario.market,
                self.tree,
                parts.membership,
                costs.expected_cost,
                groups=parts.population.group_accounts(),
                round_signal=parts.round_signal,
            )
            federation = self.env.process(self._federation(self.make_stages(parts, self.on_round)))
            # Market processes run forever; the run ends with the federation.
            self.env.run(until=federation)
            if self._failure is not None:
                raise self._failure
            head = parts.market.head_hash
            groups = parts.population.group_accounts()
            stats = market_stats(parts.market, parts.applier, self.scenario.market, groups)
            ledger = parts.market.summary()
        except RunInterrupted:
            # A clean stop (SIGTERM, SIGINT): seal what the open round wrote.
            parts.market.end_block()
            raise
        finally:
            parts.market.close()
        return result_of(parts, head, stats, ledger)


def initial_record(parts: Parts) -> RoundRecord:
    """Round 0: the initial model's test metrics."""
    res = parts.server.test_results(parts.fed.weights)
    backdoor = parts.server.backdoor_success(parts.fed.weights, parts.population)
    return RoundRecord(
        0, 0.0, 0.0, 0, 0, 0, len(parts.fed.active), res.accuracy, res.loss, 0.0, 0.0, 0.0,
        backdoor_success=backdoor,
    )  # fmt: skip


def ground_truth(parts: Parts) -> GroundTruth:
    """The population's ground truth over every identity a client used: a
    whitewasher's fresh identities are the same attacker."""
    pop, book = parts.population, parts.population.identities
    gt = pop.ground_truth()
    behaviours: dict[str, str] = gt["behaviours"]
    roles: dict[str, str] = gt["roles"]
    by_owner: dict[str, list[str]] = {}
    for ident in book.all():
        behaviours.setdefault(ident.account, behaviours.get(book.current(ident.client), "honest"))
        roles.setdefault(ident.account, roles.get(book.first(ident.client), "honest"))
        by_owner.setdefault(ident.owner, []).append(ident.account)
    # An owner's identities: a whitewasher's fresh names, a Sybil group's identities
    # (only those are sorted: at 100,000 clients sorting every owner took ~0.4 s).
    multi = dict(sorted((owner, ids) for owner, ids in by_owner.items() if len(ids) > 1))
    return GroundTruth(
        attackers=tuple(sorted(attacker_identities(pop))),
        behaviours=behaviours,
        groups=gt["groups"],
        coalitions=tuple(gt["coalitions"]),
        market_attackers=gt["market_attackers"],
        identities=multi,
        owners=book.owners(),
        roles=dict(sorted(roles.items())),
    )


def result_of(parts: Parts, head: str, stats: Any, ledger: LedgerSummary) -> WorldResult:
    privacy = parts.privacy
    identities = parts.fed.identities
    return WorldResult(
        rounds=parts.rec.rounds,
        rows=parts.rec.rows,
        final_weights=parts.fed.weights,
        head_hash=head,
        ground_truth=ground_truth(parts),
        final_epsilon=identity_epsilon(privacy, identities),
        owner_epsilon=owner_epsilon(privacy, identities),
        grad_sample_mode=parts.tasks.grad_sample_mode if privacy is not None else None,
        market=stats,
        data=parts.data,
        device=parts.server.device,
        version_weights=parts.rec.version_weights,
        latency=parts.server.measured_latency(parts.fed.weights),
        ledger=ledger,
    )
