"""Who the clients are: groups, behaviours, presence and coalitions, round by round.

The population is ground truth. It decides which behaviour each client runs
in a round (sent to the ClientApp), which clients are present (join, leave,
dropouts), and which coalition attacks rewrite replies on the server side. It
is written to ``ground_truth.json`` and never handed to a mechanism or an
aggregator.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.coalition import CoalitionAttack, create_coalition_attack
from agents.sybil import SybilGroup, sybil_indices
from agents.training import RoundContext, TrainingBehaviour, behaviour_to_config, create_behaviour
from simulation.config.schema import (
    AttackEvent,
    CoalitionEvent,
    DropoutEvent,
    GroupConfig,
    JoinEvent,
    LeaveEvent,
    Scenario,
)
from simulation.rng import SeedTree
from simulation.world.identities import IdentityBook

log = logging.getLogger("fedmarket.population")

_FREE_RIDER = create_behaviour("free_rider")


def coalition_params(
    scenario: Scenario, event: CoalitionEvent, members: tuple[str, ...]
) -> dict[str, Any]:
    """A coalition attack's parameters with what the run supplies: its members (the
    group's first identities) and, for ALIE, the paper's fixed n and m per round (the
    expected participants, and expected colluders among them)."""
    params = dict(event.params)
    if event.attack == "sybil_duplicate":
        params.setdefault("groups", [{"owner": members[0], "identities": members}])
        return params
    params.setdefault("members", members)
    if event.attack == "alie":
        n = scenario.clients.per_round()
        params.setdefault("num_clients", n)
        params.setdefault("num_attackers", max(1, round(n * len(members) / scenario.clients.count)))
    return params


Weights = dict[str, np.ndarray]


@dataclass
class Population:
    """Group membership and everything that follows from it."""

    scenario: Scenario
    identities: IdentityBook
    tree: SeedTree
    group_of: dict[int, str] = field(default_factory=dict)
    members: dict[str, list[int]] = field(default_factory=dict)
    behaviours: dict[str, TrainingBehaviour] = field(default_factory=dict)
    coalitions: list[tuple[CoalitionEvent, CoalitionAttack]] = field(default_factory=list)
    _sybil_rows: dict[int, np.ndarray] = field(default_factory=dict)
    effort: dict[int, int] = field(default_factory=dict)
    """Client slot → the local epochs it chose (``SetEffort`` of a rational participant),
    in place of the scenario's ``training.epochs``."""
    effort_max: dict[int, int] = field(default_factory=dict)
    """Client slot → the most epochs it may choose (what its DP noise is calibrated for)."""

    @classmethod
    def create(
        cls,
        scenario: Scenario,
        accounts: list[str],
        tree: SeedTree,
        mean_rows: float | None = None,
    ) -> Population:
        """Assign clients to groups with a seeded permutation, in declaration order.

        ``accounts`` are the clients' first identities; the population's
        :class:`IdentityBook` maps every identity a client later uses (and every
        Sybil identity) to its data owner.
        """
        pop = cls(scenario, IdentityBook(()), tree)  # the real book once Sybils are known
        taken = {i for g in scenario.population for i in (g.clients or ())}
        order = [
            int(i) for i in tree.numpy("population").permutation(len(accounts)) if i not in taken
        ]
        start = 0
        for g in scenario.population:
            if g.clients is not None:
                chosen = sorted(g.clients)
            else:
                size = g.size(len(accounts))
                chosen = sorted(order[start : start + size])
                start += size
            pop.members[g.group] = chosen
            for i in chosen:
                pop.group_of[i] = g.group
            params = dict(g.params)
            if g.behaviour == "backdoor" and params.get("replacement") and mean_rows:
                params.setdefault("round_examples", scenario.clients.per_round() * mean_rows)
            pop.behaviours[g.group] = create_behaviour(g.behaviour, params)
        for event in scenario.timeline:
            if isinstance(event, CoalitionEvent):
                members = tuple(accounts[i] for i in pop.members[event.group])
                params = coalition_params(scenario, event, members)
                pop.coalitions.append((event, create_coalition_attack(event.attack, params)))
        owner_slot = {
            i: pop.members[g.group][0]
            for g in scenario.population
            if g.sybil is not None
            for i in pop.members[g.group]
        }
        pop.identities = IdentityBook(accounts, owner_slot)
        return pop

    def account(self, client: int) -> str:
        """The identity client slot ``client`` acts as now."""
        return self.identities.current(client)

    # ----------------------------------------------------------------- lookups

    def group(self, client: int) -> GroupConfig | None:
        """The population group of ``client`` (``None``: an ordinary honest client)."""
        name = self.group_of.get(client)
        if name is None:
            return None
        return next(g for g in self.scenario.population if g.group == name)

    def attackers(self) -> list[str]:
        """Ground truth: accounts in attacking groups (a group in a coalition attack
        attacks, unless the scenario says ``attacker: false``)."""
        in_coalition = {e.group for e, _ in self.coalitions}
        return sorted(
            self.account(i)
            for g in self.scenario.population
            if g.is_attacker or (g.group in in_coalition and g.attacker is not False)
            for i in self.members[g.group]
        )

    def ground_truth(self) -> dict[str, Any]:
        """What ``ground_truth.json`` records."""
        behaviours = {a: "honest" for a in self.identities.currents()}
        for g in self.scenario.population:
            for i in self.members[g.group]:
                behaviours[self.account(i)] = g.behaviour
        return {
            "attackers": self.attackers(),
            "behaviours": behaviours,
            "groups": {
                g: [self.account(i) for i in idx] for g, idx in sorted(self.members.items())
            },
            "coalitions": [{"attack": e.attack, "group": e.group} for e, _ in self.coalitions],
            "market_attackers": self.market_attackers(),
            "roles": self.roles(),
        }

    def group_accounts(self) -> dict[str, tuple[str, ...]]:
        """Population group → its members' first identities: what a market behaviour
        naming ``group`` acts as."""
        book = self.identities
        return {g: tuple(book.of_slot(i)[0] for i in idx) for g, idx in self.members.items()}

    def roles(self) -> dict[str, str]:
        """Ground truth: each client's first identity (and each other market attacker)
        → its attack role, ``"honest"`` if none. A role joins with ``+``: ``sybil`` for a
        Sybil group, its coalition attack (else its training behaviour when that
        attacks), then each attacking market behaviour it is a member of."""
        coalition = {e.group: e.attack for e, _ in self.coalitions}
        attacking = set(self.attackers())
        parts: dict[str, list[str]] = {a: [] for a in self.first_identities()}
        for g in self.scenario.population:
            for i in self.members[g.group]:
                first = self.identities.of_slot(i)[0]
                if self.account(i) not in attacking:
                    continue
                own = parts[first]
                if g.sybil is not None:
                    own.append("sybil")
                if g.group in coalition:
                    own.append(coalition[g.group])
                elif g.behaviour != "honest":
                    own.append(g.behaviour)
        for behaviour, members in self.market_attackers().items():
            for account in members:
                parts.setdefault(account, []).append(behaviour)
        return {a: "+".join(p) or "honest" for a, p in sorted(parts.items())}

    def first_identities(self) -> list[str]:
        """Every client slot's first identity, by slot."""
        return [self.identities.first(c) for c in range(len(self.identities))]

    def market_attackers(self) -> dict[str, list[str]]:
        """Ground truth of the market: members of cabals, whitewashers, license abusers."""
        from agents.market import attacking_market_behaviours, create_market_behaviour

        attacking = attacking_market_behaviours()
        groups = self.group_accounts()
        out: dict[str, list[str]] = {}
        for b in self.scenario.market.behaviours:
            if b.behaviour in attacking:
                params = create_market_behaviour(b.behaviour, b.params, groups).params
                members = getattr(params, "members", None)
                accounts = (
                    list(members()) if callable(members) else list(getattr(params, "accounts", ()))
                )
                out.setdefault(b.behaviour, []).extend(sorted(accounts))
        return out

    # ----------------------------------------------------------- round by round

    def present(self, client: int, round_: int, now: float) -> bool:
        """Has the client joined and not yet left?"""
        name = self.group_of.get(client)
        if name is None:
            return True
        for event in self.scenario.timeline:
            if getattr(event, "group", None) != name:
                continue
            if isinstance(event, JoinEvent) and (
                (event.round is not None and round_ < event.round)
                or (event.time is not None and now < event.time)
            ):
                return False
            if isinstance(event, LeaveEvent) and (
                (event.round is not None and round_ >= event.round)
                or (event.time is not None and now >= event.time)
            ):
                return False
        return True

    def absent_now(self, round_: int, now: float) -> set[int]:
        """The clients not :meth:`present`: only a group's members can be (timeline
        join/leave), so this walks them, not the whole population, every round."""
        return {c for c in self.group_of if not self.present(c, round_, now)}

    def behaviour(self, client: int, round_: int, now: float) -> TrainingBehaviour | None:
        """The behaviour ``client`` runs this round, or ``None`` for plain honest training.

        Members of a coalition attack whose members do not train (stale replay, update
        copying) run ``free_rider`` while it is in force: the attack supplies their
        submission, and they spend no compute.
        """
        name = self.group_of.get(client)
        if name is None:
            return None
        for event, attack in self.coalitions:
            if event.group == name and not attack.members_train and event.active(round_, now):
                return _FREE_RIDER
        windows = [
            e for e in self.scenario.timeline if isinstance(e, AttackEvent) and e.group == name
        ]
        if windows and not any(w.active(round_, now) for w in windows):
            return None
        return self.behaviours[name]

    def behaviour_config(self, client: int, round_: int, now: float) -> str | None:
        """The behaviour as the JSON the ClientApp rebuilds it from."""
        b = self.behaviour(client, round_, now)
        return behaviour_to_config(b) if b is not None else None

    def epochs(self, client: int, round_: int, now: float, base: int) -> int:
        """Local epochs: the effort the client chose (else ``base``), as its behaviour
        runs them (honest heterogeneity may change them)."""
        return self.epochs_at(client, self.effort.get(client, base), round_, now)

    def epochs_at(
        self, client: int, chosen: int, round_: int | None = None, now: float = 0.0
    ) -> int:
        """The local epochs the client runs when it trains ``chosen`` epochs, in
        ``round_`` (``None``: under its group's own behaviour)."""
        b = self.planned_behaviour(client, round_, now)
        return b.local_epochs(chosen) if b is not None else chosen

    def planned_behaviour(
        self, client: int, round_: int | None = None, now: float = 0.0
    ) -> TrainingBehaviour | None:
        """The behaviour of ``round_`` (:meth:`behaviour`), or with ``round_`` ``None``
        the client's group's own behaviour (what DP noise is calibrated for)."""
        if round_ is not None:
            return self.behaviour(client, round_, now)
        name = self.group_of.get(client)
        return self.behaviours[name] if name is not None else None

    def train_rows(
        self, client: int, rows: int, round_: int | None = None, now: float = 0.0
    ) -> int:
        """How many of its ``rows`` the client trains on (its behaviour's data fraction)."""
        b = self.planned_behaviour(client, round_, now)
        return b.train_rows(rows) if b is not None else rows

    def planned_epochs(self, client: int, base: int) -> int:
        """Local epochs under the client's group's own behaviour, at the most it may
        choose (so noise calibrated for them never runs past the target ε)."""
        return self.epochs_at(client, self.effort_max.get(client, base))

    def speed_factor(self, client: int, round_: int, now: float) -> float:
        """Compute-speed factor for the time model."""
        b = self.behaviour(client, round_, now)
        return b.heterogeneity.compute_speed if b is not None else 1.0

    def drops_out(self, client: int, round_: int, now: float, num_classes: int) -> bool:
        """Does the client fail to answer this round (behaviour or dropout events)?"""
        rng = self.tree.numpy("dropout", client, round_)
        b = self.behaviour(client, round_, now)
        if b is not None:
            ctx = RoundContext(round_, self.account(client), num_classes, rng)
            if b.drops_out(ctx):
                return True
        name = self.group_of.get(client)
        for event in self.scenario.timeline:
            if (
                isinstance(event, DropoutEvent)
                and (event.group is None or event.group == name)
                and event.active(round_, now)
                and rng.random() < event.probability
            ):
                return True
        return False

    def data_indices(self, client: int, partitions: tuple[np.ndarray, ...]) -> np.ndarray | None:
        """For Sybil identities: the rows they train on (a split or copy of the owner's).

        Computed once per group (the split is fixed for the run) and kept by client index.
        """
        g = self.group(client)
        if g is None or g.sybil is None:
            return None
        if client not in self._sybil_rows:
            idx = self.members[g.group]
            owner = idx[0]
            spec = SybilGroup(
                owner=self.account(owner),
                identities=tuple(self.account(i) for i in idx),
                mode=g.sybil,
            )
            split = sybil_indices(partitions[owner], spec, self.tree.numpy("sybil", g.group))
            for i in idx:
                self._sybil_rows[i] = split[self.account(i)]
        return self._sybil_rows[client]

    def apply_coalitions(
        self, round_: int, now: float, submissions: Mapping[int, Weights], global_weights: Weights
    ) -> dict[int, Weights]:
        """Let active coalition attacks rewrite their members' submissions."""
        out = dict(submissions)
        if not self.coalitions:
            return out
        keys = list(global_weights)
        glob = [global_weights[k] for k in keys]
        # Attacks name members by their first identity, so membership follows the data
        # owner when a member re-enters under a fresh one (whitewashing).
        first = {c: self.identities.of_slot(c)[0] for c in out}
        slot = {a: c for c, a in first.items()}
        for index, (event, attack) in enumerate(self.coalitions):
            if not event.active(round_, now):
                continue
            by_account = {first[c]: [w[k] for k in keys] for c, w in sorted(out.items())}
            rng = self.tree.numpy("coalition", index, round_)
            rewritten = attack.apply(round_, by_account, glob, rng)
            for account, arrays in rewritten.items():
                c = slot[account]
                out[c] = {
                    k: np.asarray(v, dtype=global_weights[k].dtype)
                    for k, v in zip(keys, arrays, strict=True)
                }
        return out

    def backdoor(self) -> tuple[TrainingBehaviour, str] | None:
        """The first backdoor behaviour in the population, to measure its success."""
        for g in self.scenario.population:
            if g.behaviour == "backdoor":
                return self.behaviours[g.group], g.group
        return None
