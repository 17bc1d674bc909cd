"""Everything a run's stages work with, built once from the scenario.

:func:`build_parts` turns a scenario into typed parts (data, the server's
model, the federation state, the strategy, the mechanism, the privacy
accountant, the population, the ledger); :func:`default_stages` arranges the
stages of a round over them. The world only owns the clock, the seed tree
and that order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from agents.market import Availability
from marketplace import Keyring, Market
from marketplace.contribution import ContributionEvaluator, create_evaluator
from marketplace.incentives import IncentiveMechanism, create_mechanism
from simulation.config.prices import mechanism_params, pricing_for
from simulation.config.schema import DPSGDPrivacy, Scenario
from simulation.fl.aggregation import create_strategy, min_replies
from simulation.fl.device import resolve_device
from simulation.fl.federated import FederatedData
from simulation.fl.training import DataSpec, choose_grad_sample_mode
from simulation.rng import SeedTree
from simulation.world.accounting import ClientPrivacy
from simulation.world.context import Federation, Recorder
from simulation.world.market_process import RoundSignal
from simulation.world.market_setup import (
    Enrolment,
    LedgerReputation,
    MembershipEvents,
    open_market,
)
from simulation.world.population import Population
from simulation.world.records import RoundRecord, Transport
from simulation.world.server_model import ServerModel
from simulation.world.stages import (
    AccountPrivacy,
    AdvanceClock,
    Aggregate,
    ApplyCoalitions,
    AttackMetrics,
    ChargeCosts,
    CheckReferencePrecision,
    CloseRound,
    Dispatch,
    EvaluateModel,
    RecordContributions,
    RegisterVersion,
    Reward,
    SampleClients,
    ScoreContributions,
    Screen,
    SettleRevenue,
    SignalRoundClosed,
    Stage,
    StopExhausted,
)
from simulation.world.tasks import NodeSigning, TaskBuilder, trained_rows
from simulation.world.timing import TimeModel

__all__ = ["Parts", "build_parts", "default_stages"]


def account_name(index: int) -> str:
    """The market account of client ``index``."""
    return f"client-{index:03d}"


@dataclass
class Parts:
    """A run's components (built by :func:`build_parts`)."""

    scenario: Scenario
    tree: SeedTree
    clock: Callable[[], float]
    transport: Transport
    data: FederatedData
    server: ServerModel
    population: Population
    fed: Federation
    rec: Recorder
    time_model: TimeModel
    strategy: Any
    mechanism: IncentiveMechanism
    evaluator: ContributionEvaluator | None
    privacy: ClientPrivacy | None
    tasks: TaskBuilder
    market: Market
    enrolment: Enrolment
    membership: MembershipEvents
    applier: Any = field(default=None)
    round_signal: RoundSignal | None = None
    """The federation's round-closed signal to market processes (set by the world)."""
    node_signed: bool = False
    """Each node signs its own contribution entries (``--engine deployment``)."""


def build_parts(
    scenario: Scenario,
    out_dir: Path,
    tree: SeedTree,
    clock: Callable[[], float],
    transport: Transport,
    keyring: Keyring,
    node_signed: bool = False,
) -> Parts:
    """Build every component of a run and open its ledger (signed with ``keyring``;
    ``node_signed``: each node signs its own contributions, ``--engine deployment``)."""
    n = scenario.clients.count
    accounts = [account_name(i) for i in range(n)]
    spec = DataSpec.of(scenario)
    data = spec.build()
    server = ServerModel(
        scenario, data, tree, resolve_device(scenario.training, scenario.resources)
    )
    weights = server.initial_weights()
    model_bytes = sum(int(v.nbytes) for v in weights.values())
    time_model = TimeModel.create(
        scenario.timing, n, server.flops, model_bytes, tree.numpy("speeds")
    )
    mean_rows = float(np.mean([len(p) for p in data.partitions]))
    population = Population.create(scenario, accounts, tree, mean_rows)
    fed = Federation(weights, population.identities, active=set(range(n)))
    population.effort_max = effort_ceilings(scenario, fed, population.group_accounts())
    strategy = _strategy(scenario, tree, server)
    contrib = scenario.contribution
    evaluator = create_evaluator(contrib.evaluator, **contrib.params) if contrib.evaluator else None
    privacy, grad_mode = _privacy(scenario, server, population, data)
    tasks = TaskBuilder(
        scenario, spec, data, population, privacy, grad_mode, tree, server.device.used
    )
    market = open_market(scenario, out_dir, keyring, n, clock)
    try:
        mechanism = _mechanism(scenario, fed, market)
    except Exception:
        market.close()
        raise
    if node_signed:
        tasks.signing = NodeSigning(market, privacy)
    enrolment = Enrolment(market, scenario.market, fed, [len(p) for p in data.partitions])
    membership = MembershipEvents(fed, enrolment, population.effort)
    return Parts(
        scenario=scenario,
        tree=tree,
        clock=clock,
        transport=transport,
        data=data,
        server=server,
        population=population,
        fed=fed,
        rec=Recorder(),
        time_model=time_model,
        strategy=strategy,
        mechanism=mechanism,
        evaluator=evaluator,
        privacy=privacy,
        tasks=tasks,
        market=market,
        enrolment=enrolment,
        membership=membership,
        node_signed=node_signed,
    )


def _strategy(scenario: Scenario, tree: SeedTree, server: ServerModel) -> Any:
    agg = scenario.aggregation
    strategy = create_strategy(
        agg.strategy,
        agg.params,
        agg.client_dp,
        rng=tree.numpy("client-dp"),
        server_momentum=agg.server_momentum,
    )
    rule = getattr(strategy, "inner", strategy)  # under ServerMomentum, the wrapped rule
    if hasattr(rule, "set_root_update"):
        # FLTrust: the server trains on its own small clean root set (the validation split).
        rule.set_root_update(server.root_update)
    return strategy


def _mechanism(scenario: Scenario, fed: Federation, market: Market) -> IncentiveMechanism:
    params = mechanism_params(scenario.rewards.mechanism, scenario.rewards.params)
    if scenario.rewards.mechanism == "reputation":
        params.setdefault("reputation", LedgerReputation(fed, market))
    return create_mechanism(scenario.rewards.mechanism, **params)


def revenue_share(
    scenario: Scenario, mechanism: IncentiveMechanism, fed: Federation, market: Market
) -> IncentiveMechanism:
    """The rule whose weights set a version's contributor shares: ``rewards.revenue_share``
    when named, else the rewards mechanism itself."""
    name = scenario.rewards.revenue_share
    if name is None:
        return mechanism
    params: dict[str, Any] = (
        {"reputation": LedgerReputation(fed, market)} if name == "reputation" else {}
    )
    return create_mechanism(name, **params)


def royalties_of(scenario: Scenario, mechanism: IncentiveMechanism) -> IncentiveMechanism:
    """What splits licence revenue: the scenario's ``royalties`` mechanism, or one with
    the ledger's platform fee."""
    if scenario.rewards.mechanism == "royalties":
        return mechanism
    return create_mechanism("royalties", platform_fee_bps=scenario.market.params.platform_fee_bps)


def _privacy(
    scenario: Scenario, server: ServerModel, population: Population, data: FederatedData
) -> tuple[ClientPrivacy | None, str]:
    priv = scenario.privacy
    if not isinstance(priv, DPSGDPrivacy):
        return None, "hooks"
    mode = choose_grad_sample_mode(
        server.model, priv.grad_sample_mode, scenario.training.batch_size
    )
    privacy = ClientPrivacy(
        priv,
        scenario.training,
        scenario.rounds,
        partial(trained_rows, population, data),
        owner_of=population.identities.owner,
        epochs_of=partial(population.planned_epochs, base=scenario.training.epochs),
    )
    return privacy, mode


def churn_availability(
    scenario: Scenario, fed: Federation, groups: Mapping[str, Sequence[str]]
) -> dict[int, Availability]:
    """Client slot → availability of every member of a ``churn`` market behaviour."""
    from agents.market import create_market_behaviour

    out: dict[int, Availability] = {}
    for b in scenario.market.behaviours:
        behaviour = create_market_behaviour(b.behaviour, b.params, groups)
        avail = getattr(behaviour, "availability", None)
        if not isinstance(avail, Availability):
            continue
        for account in behaviour.params.members():  # type: ignore[attr-defined]
            slot = fed.identities.slot(account)
            if slot is not None:
                out[slot] = avail
    return out


def effort_ceilings(
    scenario: Scenario, fed: Federation, groups: Mapping[str, Sequence[str]]
) -> dict[int, int]:
    """Client slot → the most local epochs it may choose: ``effort.max_epochs`` of
    every ``rational_participants`` member with an effort knob."""
    from agents.market import RationalParticipantsParams, create_market_behaviour

    out: dict[int, int] = {}
    for b in scenario.market.behaviours:
        params = create_market_behaviour(b.behaviour, b.params, groups).params
        if not isinstance(params, RationalParticipantsParams) or params.effort is None:
            continue
        for account in params.members():
            slot = fed.identities.slot(account)
            if slot is not None:
                out[slot] = max(out.get(slot, 0), params.effort.max_epochs)
    return out


def default_stages(
    parts: Parts, on_round: Callable[[RoundRecord], None] | None = None
) -> list[Stage]:
    """The stages of a round, in order: sample → dispatch → screen → account privacy →
    score → aggregate → register → reward → settle → record."""
    sc, p = parts.scenario, parts
    fed, rec, market, pop = p.fed, p.rec, p.market, p.population
    dp = p.privacy is not None
    epochs = sc.training.epochs

    def utility(flat: Any) -> float:
        return p.server.validation_utility(flat, fed.weights)

    return [
        StopExhausted(p.privacy, pop, fed, market, epochs),
        SampleClients(
            sc.clients,
            p.tree,
            pop,
            fed,
            market,
            p.data.num_classes,
            churn_availability(sc, fed, pop.group_accounts()),
            enrol=p.enrolment,
        ),
        Dispatch(p.tasks, p.transport, fed),
        ApplyCoalitions(pop, fed),
        AccountPrivacy(p.privacy, fed, rec),
        Screen(
            p.time_model,
            pop,
            fed,
            base_epochs=epochs,
            dp=dp,
            max_update_norm=sc.aggregation.max_update_norm,
            deadline=sc.timing.deadline_s,
            local_steps=sc.training.local_steps,
            batch_size=sc.training.batch_size,
        ),
        ChargeCosts(sc.market, rec),
        RecordContributions(market, rec, p.privacy, p.node_signed),
        AdvanceClock(p.time_model),
        ScoreContributions(
            sc.contribution,
            p.evaluator,
            utility,
            p.tree,
            fed,
            market,
            rec,
            strategy=p.strategy,
            min_replies=min_replies(sc.aggregation.strategy, sc.aggregation.params),
        ),
        *(
            [CheckReferencePrecision(sc.contribution.on_imprecise)]
            if sc.contribution.reference
            else []
        ),
        Aggregate(p.strategy, fed, rec, sc.aggregation.flag_below),
        EvaluateModel(p.server, pop, fed),
        RegisterVersion(
            market,
            fed,
            pricing_for(sc.market),
            rec.version_weights if sc.output.keep_versions else None,
            rule=revenue_share(sc, p.mechanism, fed, market),
        ),
        Reward(
            p.mechanism,
            sc.rewards.emission_per_round,
            market,
            fed,
            rec,
            sc.market.params.halving_rounds,
        ),
        SettleRevenue(market, fed, rec, royalties_of(sc, p.mechanism)),
        AttackMetrics(pop, fed, rec),
        CloseRound(market, fed, rec, p.privacy, p.clock, on_round),
        *([SignalRoundClosed(p.round_signal, sc.rounds)] if p.round_signal is not None else []),
    ]
