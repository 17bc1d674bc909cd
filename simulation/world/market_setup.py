"""The market side of a run: the ledger's genesis and participants, the simpy market
processes (buyers, voters, cabals, ...), membership changes they cause, and the
market's statistics at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from marketplace import TOKEN, Keyring, Market
from simulation.config.prices import ledger_params
from simulation.config.schema import MarketConfig, Scenario
from simulation.rng import SeedTree
from simulation.world.context import Federation
from simulation.world.records import MarketStats

__all__ = [
    "Enrolment",
    "LedgerReputation",
    "MembershipEvents",
    "market_stats",
    "open_market",
    "start_market_processes_for",
]


def open_market(
    scenario: Scenario,
    out_dir: Path,
    keyring: Keyring,
    clients: int,
    clock: Callable[[], float],
) -> Market:
    """Create the ledger, signed with ``keyring``: genesis only, whose params are the
    scenario's ``market.params`` (the rules the run's ledger enforces). Clients are
    registered when they first take part (:class:`Enrolment`), so start-up and the
    ledger do not grow with clients that never do."""
    market = Market.create(
        out_dir / "ledger.db",
        seed=scenario.seed,
        genesis={
            "scenario": scenario.name,
            "scenario_hash": scenario.sha256(),
            "seed": scenario.seed,
            "schema_version": scenario.schema_version,
            "clients": clients,
            "rounds": scenario.rounds,
            "params": ledger_params(scenario.market.params).to_json(),
        },
        keyring=keyring,
        clock=clock,
    )
    market.end_block()
    return market


class Enrolment:
    """Each client's registration, initial grant and stake, on its first
    participation (and a whitewasher's fresh identity's grant when it rejoins)."""

    def __init__(
        self, market: Market, cfg: MarketConfig, fed: Federation, examples: Sequence[int]
    ) -> None:
        self.market = market
        self.cfg = cfg
        self.fed = fed
        self.examples = examples
        self.enrolled: set[str] = set()

    def __call__(self, clients: Iterable[int]) -> None:
        """Enrol every client of ``clients`` not enrolled yet, in order."""
        for c in clients:
            account = self.fed.account(c)
            if account in self.enrolled:
                continue
            if account not in self.market.state.accounts:
                meta = {"num_examples": int(self.examples[c])}
                self.market.register_participant(account, role="data_owner", meta=meta)
            self.grant(account)

    def grant(self, account: str) -> None:
        """A newly enrolled identity's grant and stake."""
        self.enrolled.add(account)
        grant_and_stake(self.market, self.cfg, account)


def grant_and_stake(market: Market, cfg: MarketConfig, account: str) -> None:
    """A new client's initial grant, and the part of it it stakes."""
    grant = round(cfg.initial_grant * TOKEN)
    if grant <= 0:
        return
    market.mint(account, grant, reason="initial_grant")
    stake = min(round(cfg.stake * TOKEN), grant)
    if stake > 0:
        market.stake(account, stake)


class MembershipEvents:
    """Market intents that change the federation: clients leaving and (re)joining, and
    the local epochs a client chose (``SetEffort``, into ``effort``: client slot →
    epochs, which the population's :meth:`~Population.epochs` reads).

    A whitewasher rejoins under a fresh identity: it keeps its data, not its name,
    and gets a new grant and stake.
    """

    def __init__(
        self, fed: Federation, enrolment: Enrolment, effort: dict[int, int] | None = None
    ) -> None:
        self.fed = fed
        self.enrolment = enrolment
        self.effort = effort if effort is not None else {}

    def __call__(self, outcome: Any) -> None:
        from agents.intents import Join, Leave, SetEffort
        from agents.market import base_identity

        intent = outcome.intent
        if not outcome.accepted or not isinstance(intent, Join | Leave | SetEffort):
            return
        c = self.fed.identities.slot(base_identity(intent.account))
        if c is None:
            return
        if isinstance(intent, SetEffort):
            self.effort[c] = intent.epochs
            return
        if isinstance(intent, Leave):
            self.fed.departed.add(c)
            return
        self.fed.departed.discard(c)
        if intent.account != self.fed.account(c):
            self.fed.identities.rename(c, intent.account)
            self.enrolment.grant(intent.account)


def start_market_processes_for(
    env: simpy.Environment,
    market: Market,
    cfg: MarketConfig,
    tree: SeedTree,
    on_event: Callable[[Any], None],
    expected_cost: Callable[..., float] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    round_signal: Any = None,
) -> Any:
    """Start the scenario's market processes; return their intent applier (or ``None``).

    ``groups`` (population group → identities) binds behaviours that name a group;
    ``round_signal`` (a :class:`~simulation.world.market_process.RoundSignal`) lets
    processes wait for the federation's round closes."""
    if not cfg.behaviours:
        return None
    from agents.market import create_market_behaviour
    from simulation.world.market_process import (
        IntentApplier,
        MarketViewImpl,
        start_market_processes,
    )

    behaviours = [create_market_behaviour(b.behaviour, b.params, groups) for b in cfg.behaviours]
    clock = lambda: float(env.now)  # noqa: E731
    applier = IntentApplier(
        market, on_event=on_event, buyer_budget=round(cfg.buyer_budget * TOKEN), clock=clock
    )
    view = MarketViewImpl(
        market,
        clock,
        rating_rule=cfg.rating_rule_name,
        rating_params=cfg.rating_rule_params,
        expected_cost_fn=expected_cost,
        round_signal=round_signal,
    )

    def rng_for(key: str) -> np.random.Generator:
        return tree.numpy("market", key)

    start_market_processes(env, market, behaviours, rng_for, applier=applier, view=view)
    return applier


def market_stats(
    market: Market,
    applier: Any,
    cfg: MarketConfig,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> MarketStats:
    """Licences, revenue, fraud and the rating shift colluding voters caused: the
    aggregated rating against the version's true quality (5 × its test accuracy),
    the yardstick honest voters aim at."""
    counters = applier.counters.as_dict() if applier is not None else {}
    voted = sorted({str(e.data["version"]) for e in market.entries() if e.kind == "vote"})
    owned = _cabal_owned(market, cfg, voted, groups)
    shifts: dict[str, float] = {}
    for v in voted:
        rating = market.rating(v, rule=cfg.rating_rule_name, params=cfg.rating_rule_params)
        accuracy = market.version(v).metrics.get("test_accuracy")
        if rating is not None and accuracy is not None:
            shifts[v] = float(rating) - 5.0 * float(accuracy)
    if not shifts:
        return MarketStats(counters)
    own = [s for v, s in shifts.items() if owned is not None and v in owned]
    other = [s for v, s in shifts.items() if owned is not None and v not in owned]
    values = list(shifts.values())
    return MarketStats(
        counters,
        rating_shift_mean=float(np.mean(values)),
        rating_shift_abs_mean=float(np.mean(np.abs(values))),
        rating_shift_own_mean=float(np.mean(own)) if own else None,
        rating_shift_other_mean=float(np.mean(other)) if other else None,
    )


def _cabal_owned(
    market: Market,
    cfg: MarketConfig,
    versions: list[str],
    groups: Mapping[str, Sequence[str]] | None,
) -> set[str] | None:
    """The versions any colluding cabal counts as its own (``None``: no cabal)."""
    from agents.market import ColludingCabalBehaviour, create_market_behaviour

    cabals = [
        b
        for b in (create_market_behaviour(c.behaviour, c.params, groups) for c in cfg.behaviours)
        if isinstance(b, ColludingCabalBehaviour)
    ]
    if not cabals:
        return None
    owned = set()
    for v in versions:
        shares = dict(market.version(v).contributors)
        if any(c.is_own(shares, set(c.params.members())) for c in cabals):  # type: ignore[attr-defined]
            owned.add(v)
    return owned


class LedgerReputation(Mapping[str, float]):
    """A live, read-only view of reputations as the ledger derives them (decay
    included), for mechanisms that pay by reputation."""

    def __init__(self, fed: Federation, market: Market) -> None:
        self._fed = fed
        self._market = market

    def _accounts(self) -> list[str]:
        return self._fed.identities.currents()

    def __getitem__(self, account: str) -> float:
        if account not in self._accounts():
            raise KeyError(account)
        return float(self._market.reputation(account))

    def __iter__(self) -> Iterator[str]:
        return iter(self._accounts())

    def __len__(self) -> int:
        return len(self._accounts())
