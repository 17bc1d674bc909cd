"""The market world: a simpy clock on which federated rounds and the economy run.

The ServerApp's main builds one ``World``. Federated training is a simpy
process: each round samples clients with the scenario's RNG, sends them
``ClientTask`` messages through Flower's ``Grid``, checks every reply (a bad
update is rejected on the ledger, the round goes on), aggregates the accepted
ones with a Flower strategy, advances the simulated clock by the time model's
round duration, evaluates, registers the model version and pays rewards through
the incentive mechanism. Later processes (buyers, churn, attacks) run on the
same environment.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import simpy
import torch

from marketplace import TOKEN, Keyring, LedgerSummary, Market
from marketplace.contribution import RoundData, coalition_utility, create_evaluator
from marketplace.incentives import ContributionInfo, RoundOutcome, create_mechanism
from simulation.config.schema import DPSGDPrivacy, Scenario
from simulation.fl.aggregation import create_strategy
from simulation.fl.data import FederatedData
from simulation.fl.evaluation import validation_results
from simulation.fl.models import build_model, flops_per_example, load_numpy, state_to_numpy
from simulation.fl.privacy import PrivacyLedger, calibrate_noise, poisson_schedule
from simulation.fl.training import (
    ClientTask,
    DataSpec,
    DPSpec,
    choose_grad_sample_mode,
    evaluate,
    run_client_task,
)
from simulation.rng import SeedTree
from simulation.world.population import Population
from simulation.world.screening import check_update
from simulation.world.timing import TimeModel

log = logging.getLogger("fedmarket.world")

Weights = dict[str, np.ndarray]


def account_name(index: int) -> str:
    """The market account of client ``index``."""
    return f"client-{index:03d}"


def arrays_sha256(weights: Weights) -> str:
    """A hash of named arrays that covers names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(weights):
        arr = np.ascontiguousarray(weights[name])
        h.update(f"{name}|{arr.dtype.str}|{list(arr.shape)}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def aggregation_reply(round_: int, client: int, weights: Weights, num_examples: int) -> Any:
    """A train reply as a Flower strategy's ``aggregate_train`` expects it.

    Replies are rebuilt after the server's checks (and, on either engine, after
    coalition attacks rewrote them), so the metadata is explicit: ``src_node_id``
    is the client index, never a Flower node id.
    """
    from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict

    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()}),
            "metrics": MetricRecord({"num-examples": int(num_examples)}),
        }
    )
    meta = Metadata(
        run_id=0,
        message_id=f"{round_}:{client}",
        src_node_id=client,
        dst_node_id=0,
        reply_to_message_id="",
        group_id=str(round_),
        created_at=0.0,
        ttl=3600.0,
        message_type="train",
    )
    return Message(content=content, metadata=meta)


def safetensors_bytes(weights: Weights) -> bytes:
    """The model as a safetensors file (the registered artifact)."""
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in weights.items()})


@dataclass(frozen=True)
class Reply:
    """One client's answer to a train message, independent of the transport."""

    client: int
    weights: Weights | None
    metrics: dict[str, float]
    error: str | None = None


# A transport sends tasks (with the global weights) and returns replies: Flower's
# grid on the Flower path, a direct call in the in-process loop.
Transport = Callable[[list[ClientTask], Weights], list[Reply]]


@dataclass
class RoundRecord:
    """What happened in one round (one row of ``rounds.parquet``)."""

    round: int
    time: float
    duration: float
    sampled: int
    accepted: int
    rejected: int
    active_clients: int
    test_accuracy: float
    test_loss: float
    epsilon_max: float
    epsilon_mean: float
    tokens_issued: float
    dropped: int = 0
    stragglers: int = 0
    royalties_paid: float = 0.0
    backdoor_success: float = float("nan")
    model_version: str | None = None
    wall_seconds: float = 0.0


@dataclass
class WorldResult:
    """Everything a run produced, for the results writer."""

    rounds: list[RoundRecord]
    client_rows: list[tuple[int, str, str, float]]
    final_weights: Weights
    head_hash: str
    ground_truth: dict[str, Any]
    final_epsilon: dict[str, float] = field(default_factory=dict)
    market: dict[str, float] = field(default_factory=dict)
    baseline_accuracy: list[float] | None = None
    ledger: LedgerSummary | None = None


class LedgerReputation(Mapping[str, float]):
    """A live, read-only view of reputations as the ledger derives them (decay included),
    for mechanisms that pay by reputation."""

    def __init__(self, world: World) -> None:
        self._world = world

    def __getitem__(self, account: str) -> float:
        market = self._world.market
        if market is None or account not in self._world.accounts:
            raise KeyError(account)
        return float(market.reputation(account))

    def __iter__(self) -> Iterator[str]:
        return iter(self._world.accounts)

    def __len__(self) -> int:
        return len(self._world.accounts)


class World:
    """One scenario's market and federation on a simpy clock."""

    def __init__(
        self,
        scenario: Scenario,
        out_dir: Path,
        transport: Transport,
        on_round: Callable[[RoundRecord], None] | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.scenario = scenario
        self.keyring = keyring
        """Signs the ledger; ``None``: the default keyring (``Keyring.load_or_create()``)."""
        self.out_dir = out_dir
        self.transport = transport
        self.on_round = on_round
        self.tree = SeedTree(scenario.seed)
        self.env = simpy.Environment()
        self.n = scenario.clients.count
        self.accounts = [account_name(i) for i in range(self.n)]
        self.data_spec = DataSpec(
            dataset=scenario.dataset,
            partition=scenario.partition,
            num_clients=self.n,
            seed=scenario.seed,
        )
        self.data: FederatedData = self.data_spec.build()
        self.model = build_model(
            scenario.model, self.data.input_shape, self.data.num_classes, self.tree.torch("init")
        )
        self.weights: Weights = state_to_numpy(self.model)
        self.eval_model = build_model(
            scenario.model, self.data.input_shape, self.data.num_classes, self.tree.torch("eval")
        )
        self.flops = flops_per_example(self.model, self.data.input_shape)
        model_bytes = sum(int(v.nbytes) for v in self.weights.values())
        self.time_model = TimeModel.create(
            scenario.timing, self.n, self.flops, model_bytes, self.tree.numpy("speeds")
        )
        self.strategy = create_strategy(
            scenario.aggregation.strategy,
            scenario.aggregation.params,
            scenario.aggregation.client_dp,
            rng=self.tree.numpy("client-dp"),
        )
        if hasattr(self.strategy, "set_root_update"):
            # FLTrust: the server trains on its own small clean root set (the validation split).
            self.strategy.set_root_update(self._root_update)
        mech_params: dict[str, Any] = dict(scenario.rewards.params)
        if scenario.rewards.mechanism == "reputation":
            mech_params.setdefault("reputation", LedgerReputation(self))
        self.mechanism = create_mechanism(scenario.rewards.mechanism, **mech_params)
        priv = scenario.privacy
        self.dp: DPSGDPrivacy | None = priv if isinstance(priv, DPSGDPrivacy) else None
        self.privacy = PrivacyLedger(self.dp.delta if self.dp else 1e-5)
        self.grad_sample_mode = (
            choose_grad_sample_mode(
                self.model, self.dp.grad_sample_mode, scenario.training.batch_size
            )
            if self.dp
            else "hooks"
        )
        self.population = Population.create(scenario, self.accounts, self.tree)
        contrib = scenario.contribution
        self.evaluator = (
            create_evaluator(contrib.evaluator, **contrib.params) if contrib.evaluator else None
        )
        self.active: set[int] = set(range(self.n))
        self.stopped: set[int] = set()
        self.departed: set[int] = set()
        self.client_index = {a: i for i, a in enumerate(self.accounts)}
        self.identities: dict[int, list[str]] = {i: [a] for i, a in enumerate(self.accounts)}
        # Running per-account totals for the per-round attack metrics.
        self._earned: dict[str, float] = {}
        self._cost: dict[str, float] = {}
        self._tallied = 0
        self.applier: Any = None
        self.rounds: list[RoundRecord] = []
        self.rows: list[tuple[int, str, str, float]] = []
        self.version: str | None = None
        self.market: Market | None = None
        self._enrolled: set[str] = set()

    # ------------------------------------------------------------------ set-up

    def _noise_for(self, client: int) -> float:
        """σ for ``client``: given, or calibrated so that training every round ends at
        the target ε (each client's own sample rate and step count)."""
        assert self.dp is not None
        if self.dp.noise_multiplier is not None:
            return self.dp.noise_multiplier
        assert self.dp.target_epsilon is not None
        q, steps = poisson_schedule(self._client_size(client), self.scenario.training.batch_size)
        total = steps * self.scenario.training.epochs * self.scenario.rounds
        return calibrate_noise(self.dp.target_epsilon, self.dp.delta, q, total)

    def _budget(self) -> float | None:
        if self.dp is None:
            return None
        if self.dp.budget is not None:
            return self.dp.budget
        return self.dp.target_epsilon

    def _open_market(self) -> Market:
        """Genesis only: clients are registered when they first take part (_enroll)."""
        sc = self.scenario
        path = self.out_dir / "ledger.db"
        market = Market.create(
            path,
            seed=sc.seed,
            genesis={
                "scenario": sc.name,
                "scenario_hash": sc.sha256(),
                "seed": sc.seed,
                "schema_version": sc.schema_version,
                "clients": self.n,
                "rounds": sc.rounds,
            },
            keyring=self.keyring if self.keyring is not None else Keyring.load_or_create(),
            clock=lambda: float(self.env.now),
        )
        market.end_block()
        return market

    def _enroll(self, clients: Iterable[int]) -> None:
        """Register, grant and stake each client on its first participation, so
        start-up and the ledger do not grow with clients that never take part."""
        assert self.market is not None
        for c in clients:
            acct = self.accounts[c]
            if acct in self._enrolled:
                continue
            if acct not in self.market.state.accounts:
                self.market.register_participant(
                    acct, role="data_owner", meta={"num_examples": len(self.data.partitions[c])}
                )
            self._grant(acct)

    def _grant(self, acct: str) -> None:
        """The initial grant and stake of a newly enrolled identity."""
        assert self.market is not None
        self._enrolled.add(acct)
        grant = round(self.scenario.market.initial_grant * TOKEN)
        if grant > 0:
            self.market.mint(acct, grant, reason="initial_grant")
            stake = min(round(self.scenario.market.stake * TOKEN), grant)
            if stake > 0:
                self.market.stake(acct, stake)

    # ------------------------------------------------------------------- rounds

    def _start_market(self, market: Market) -> None:
        """Start the scenario's market processes (buyers, voters, cabals, ...)."""
        from agents.market import create_market_behaviour
        from simulation.world.market_process import (
            IntentApplier,
            MarketViewImpl,
            start_market_processes,
        )

        cfg = self.scenario.market
        if not cfg.behaviours:
            return
        behaviours = [create_market_behaviour(b.behaviour, b.params) for b in cfg.behaviours]
        clock = lambda: float(self.env.now)  # noqa: E731
        self.applier = IntentApplier(
            market,
            on_event=self._on_market_event,
            buyer_budget=round(cfg.buyer_budget * TOKEN),
            clock=clock,
        )
        view = MarketViewImpl(market, clock, rating_rule=cfg.rating_rule)
        start_market_processes(
            self.env,
            market,
            behaviours,
            lambda key: self.tree.numpy("market", key),
            applier=self.applier,
            view=view,
        )

    def _on_market_event(self, outcome: Any) -> None:
        """Market intents that change the federation: clients leaving and (re)joining."""
        from agents.intents import Join, Leave
        from agents.market import base_identity

        intent = outcome.intent
        if not outcome.accepted or not isinstance(intent, Join | Leave):
            return
        base = base_identity(intent.account)
        if base not in self.client_index:
            return
        c = self.client_index[base]
        if isinstance(intent, Leave):
            self.departed.add(c)
            return
        self.departed.discard(c)
        if intent.account != self.accounts[c]:
            # A whitewasher rejoins under a fresh identity: it keeps its data, not its name.
            self.accounts[c] = intent.account
            self.identities[c].append(intent.account)
            self._grant(intent.account)

    def _attacker_identities(self) -> set[str]:
        """Every identity of every attacking client (ground truth)."""
        current = set(self.population.attackers())
        return {
            i for ids in self.identities.values() if any(a in current for a in ids) for i in ids
        }

    def _ground_truth(self) -> dict[str, Any]:
        """The population's ground truth over every identity a client used: a
        whitewasher's fresh identities are the same attacker."""
        gt = self.population.ground_truth()
        behaviours: dict[str, str] = gt["behaviours"]
        for c, ids in self.identities.items():
            for i in ids:
                behaviours.setdefault(i, behaviours.get(self.accounts[c], "honest"))
        gt["attackers"] = sorted(self._attacker_identities())
        gt["identities"] = {ids[0]: ids for ids in self.identities.values() if len(ids) > 1}
        return gt

    def _market_stats(self) -> dict[str, float]:
        """Licenses, revenue, fraud and the rating shift colluding voters caused."""
        assert self.market is not None
        stats: dict[str, float] = {}
        if self.applier is not None:
            stats.update(self.applier.counters.as_dict())
        # Rating shift: the aggregated rating against the version's true quality
        # (5 × its test accuracy), the yardstick honest voters aim at.
        voted = sorted({str(e.data["version"]) for e in self.market.entries() if e.kind == "vote"})
        shifts = []
        for v in voted:
            rating = self.market.rating(v, rule=self.scenario.market.rating_rule)
            accuracy = self.market.version(v).metrics.get("accuracy")
            if rating is not None and accuracy is not None:
                shifts.append(float(rating) - 5.0 * float(accuracy))
        if shifts:
            stats["rating_shift_mean"] = float(np.mean(shifts))
            stats["rating_shift_abs_mean"] = float(np.mean(np.abs(shifts)))
        return stats

    def _price_list(self, version: str) -> None:
        from marketplace.state import PriceTerms

        assert self.market is not None
        prices = {
            name: PriceTerms(
                price=round(t.price * TOKEN), duration=t.duration_s, max_uses=t.max_uses
            )
            for name, t in sorted(self.scenario.market.prices.items())
        }
        if prices:
            self.market.set_price_list(version, prices)

    def _distribute_revenue(self, round_: int) -> float:
        """Pay every version's license revenue to its contributors (after the platform fee)."""
        from marketplace.state import pool_account

        assert self.market is not None
        paid = 0
        for v in self.market.versions():
            pool = self.market.balance(pool_account(v.version))
            if pool > 0:
                for entry in self.market.distribute_revenue(v.version):
                    acct = str(entry.data["to"])
                    if acct in self.accounts:
                        self.rows.append(
                            (round_, acct, "royalty_tokens", int(entry.data["amount"]) / TOKEN)
                        )
                paid += pool
        return paid / TOKEN

    def _tasks(self, round_: int, clients: Iterable[int]) -> list[ClientTask]:
        sc = self.scenario
        faults = {f.client: f.kind for f in sc.faults if f.rounds is None or round_ in f.rounds}
        tasks = []
        for c in clients:
            dp = None
            if self.dp is not None:
                dp = DPSpec(
                    noise_multiplier=self._noise_for(c),
                    max_grad_norm=self.dp.max_grad_norm,
                    grad_sample_mode=self.grad_sample_mode,
                )
            now = float(self.env.now)
            epochs = self.population.epochs(c, round_, now, sc.training.epochs)
            indices = self.population.data_indices(c, self.data.partitions)
            tasks.append(
                ClientTask(
                    round=round_,
                    client_index=c,
                    account=self.accounts[c],
                    data=self.data_spec,
                    model=sc.model,
                    training=sc.training.model_copy(update={"epochs": epochs}),
                    dp=dp,
                    seed=self.tree.integer("train", c, round_),
                    behaviour=self.population.behaviour_config(c, round_, now),
                    fault=faults.get(c),
                    data_indices=tuple(int(i) for i in indices) if indices is not None else None,
                )
            )
        return tasks

    def _client_size(self, c: int) -> int:
        indices = self.population.data_indices(c, self.data.partitions)
        return len(indices) if indices is not None else len(self.data.partitions[c])

    def _stop_exhausted(self, round_: int) -> None:
        """Clients whose next round would exceed their ε budget stop contributing."""
        budget = self._budget()
        if self.dp is None or budget is None:
            return
        assert self.market is not None
        now = float(self.env.now)
        for c in sorted(self.active):
            q, steps = poisson_schedule(self._client_size(c), self.scenario.training.batch_size)
            epochs = self.population.epochs(c, round_, now, self.scenario.training.epochs)
            step = (self._noise_for(c), q, steps * epochs)
            nxt = self.privacy.would_spend(self.accounts[c], step)
            if nxt > budget:
                self.active.discard(c)
                self.stopped.add(c)
                spent = self.privacy.spent(self.accounts[c])
                self.market.record(
                    "privacy_budget_exhausted",
                    {
                        "round": round_,
                        "client": self.accounts[c],
                        "epsilon_spent": spent,
                        "epsilon_next": nxt,
                        "budget": budget,
                    },
                )
                log.info(
                    "%s stops: next round would reach ε=%.3f > budget %.3f",
                    self.accounts[c],
                    nxt,
                    budget,
                )

    def _sample(self, round_: int) -> list[int]:
        now = float(self.env.now)
        active = sorted(
            c
            for c in self.active
            if self.population.present(c, round_, now) and c not in self.departed
        )
        if not active:
            return []
        cfg = self.scenario.clients
        k = max(cfg.min_per_round, round(cfg.fraction * len(active)))
        k = min(k, len(active))
        rng = self.tree.numpy("sample", round_)
        return sorted(int(c) for c in rng.choice(active, size=k, replace=False))

    def _round(self, round_: int) -> Generator[simpy.Event, Any, None]:
        assert self.market is not None
        market = self.market
        sc = self.scenario
        wall = time.perf_counter()
        now = float(self.env.now)
        self._stop_exhausted(round_)
        sampled = self._sample(round_)
        self._enroll(sampled)
        dropped = [
            c for c in sampled if self.population.drops_out(c, round_, now, self.data.num_classes)
        ]
        asked = [c for c in sampled if c not in dropped]
        market.record(
            "round_started",
            {
                "round": round_,
                "sampled": [self.accounts[c] for c in sampled],
                "dropped_out": [self.accounts[c] for c in dropped],
            },
        )
        replies = self.transport(self._tasks(round_, asked), self.weights) if asked else []
        replies = sorted(replies, key=lambda r: r.client)

        if self.population.coalitions:
            # Server-side coalition attacks rewrite their members' well-formed submissions.
            well_formed = {
                r.client: r.weights
                for r in replies
                if r.error is None
                and r.weights is not None
                and check_update(self.weights, r.weights, float("inf")) is None
            }
            rewritten = self.population.apply_coalitions(round_, now, well_formed, self.weights)
            replies = [
                Reply(r.client, rewritten[r.client], r.metrics, r.error)
                if r.client in rewritten
                else r
                for r in replies
            ]

        accepted: list[Reply] = []
        rejected: list[str] = []
        stragglers = 0
        client_secs: list[float] = []
        deadline = sc.timing.deadline_s
        for reply in replies:
            acct = self.accounts[reply.client]
            steps = int(reply.metrics.get("steps", 0))
            eps_before = self.privacy.spent(acct) if self.dp is not None else 0.0
            if self.dp is not None and steps > 0:
                step = (self._noise_for(reply.client), float(reply.metrics["sample-rate"]), steps)
                self.privacy.record(acct, step)
            eps = self.privacy.spent(acct) if self.dp is not None else None
            n_ex = int(reply.metrics.get("num-examples", 0))
            epochs = self.population.epochs(reply.client, round_, now, sc.training.epochs)
            secs = self.time_model.client_seconds(
                reply.client, n_ex * epochs, self.dp is not None
            ) / self.population.speed_factor(reply.client, round_, now)
            cost = sc.market.compute_cost_per_round + sc.market.price_per_epsilon * (
                (eps or 0.0) - eps_before
            )
            self.rows.append((round_, acct, "cost", cost))
            reason = reply.error
            if reason is None and reply.weights is not None:
                reason = check_update(self.weights, reply.weights, sc.aggregation.max_update_norm)
            if reason is None and deadline is not None and secs > deadline:
                reason = f"straggler: {secs:.3g} s > deadline {deadline:.3g} s"
                stragglers += 1
            client_secs.append(min(secs, deadline) if deadline is not None else secs)
            if eps is not None:
                self.rows.append((round_, acct, "epsilon", eps))
            if reason is not None or reply.weights is None:
                rejected.append(acct)
                market.reject_contribution(round=round_, client=acct, reason=reason or "no update")
                self.rows.append((round_, acct, "rejected", 1.0))
                log.info("round %d: rejected %s: %s", round_, acct, reason)
                continue
            metrics = {
                k: float(reply.metrics[k])
                for k in ("train-loss", "train-accuracy")
                if k in reply.metrics
            }
            market.record_contribution(
                round=round_,
                client=acct,
                update_hash=arrays_sha256(reply.weights),
                num_examples=n_ex,
                epsilon=eps,
                metrics=metrics,
            )
            accepted.append(reply)
            self.rows.append((round_, acct, "num_examples", float(n_ex)))
            for k, v in metrics.items():
                self.rows.append((round_, acct, k.replace("-", "_"), v))

        yield self.env.timeout(self.time_model.round_seconds(client_secs))

        scores = self._score(round_, accepted)
        if accepted:
            self.weights = self._aggregate(round_, accepted)
        results = self._test_results()
        backdoor = self._backdoor_success()
        total_ex = sum(int(r.metrics["num-examples"]) for r in accepted)
        shares = {
            self.accounts[r.client]: int(r.metrics["num-examples"]) / total_ex for r in accepted
        }
        artifact = hashlib.sha256(safetensors_bytes(self.weights)).hexdigest()
        self.version = market.register_model_version(
            round=round_,
            parent=self.version,
            artifact_sha256=artifact,
            metrics=results,
            contributors=shares,
        )
        self._price_list(self.version)
        emission = round(sc.rewards.emission_per_round * TOKEN)
        infos = [
            ContributionInfo(
                account=self.accounts[r.client],
                num_examples=int(r.metrics["num-examples"]),
                accepted=True,
                score=scores.get(self.accounts[r.client]),
            )
            for r in accepted
        ] + [ContributionInfo(account=a, num_examples=0, accepted=False) for a in rejected]
        outcome = RoundOutcome(
            round=round_,
            emission=emission,
            contributions=tuple(sorted(infos, key=lambda i: i.account)),
        )
        if self.mechanism.funding == "revenue":
            # Royalties: no emission; license revenue reaches contributors through the
            # ledger's revenue pools, by recorded share, after the platform fee.
            from marketplace.incentives import Allocation

            allocation = Allocation(round_, {}, (), self.mechanism.label, "revenue")
        else:
            allocation = self.mechanism.run(outcome, market)
        issued = sum(allocation.amounts.values())
        for acct, amount in sorted(allocation.amounts.items()):
            self.rows.append((round_, acct, "reward_tokens", amount / TOKEN))
        for slash in allocation.slashes:
            self.rows.append((round_, slash.account, "flagged", 1.0))
            self.rows.append((round_, slash.account, "slashed_tokens", slash.amount / TOKEN))
        royalties = self._distribute_revenue(round_)
        self._attack_rows(round_)
        market.end_block()

        eps_all = [self.privacy.spent(a) for a in self.accounts] if self.dp else [0.0]
        record = RoundRecord(
            round=round_,
            time=float(self.env.now),
            duration=self.time_model.round_seconds(client_secs),
            sampled=len(sampled),
            accepted=len(accepted),
            rejected=len(rejected),
            active_clients=len(self.active),
            test_accuracy=results["accuracy"],
            test_loss=results["loss"],
            epsilon_max=max(eps_all),
            epsilon_mean=float(np.mean(eps_all)),
            tokens_issued=issued / TOKEN,
            dropped=len(dropped),
            stragglers=stragglers,
            backdoor_success=backdoor,
            royalties_paid=royalties,
            model_version=self.version,
            wall_seconds=time.perf_counter() - wall,
        )
        self.rounds.append(record)
        if self.on_round is not None:
            self.on_round(record)

    def _attack_rows(self, round_: int) -> None:
        """Per-round attack metrics from ground truth (never shown to mechanisms):
        the attackers' cumulative share of tokens and honest participants' net profit."""
        earned, cost = self._earned, self._cost
        for _, acct, metric, value in self.rows[self._tallied :]:  # rows are append-only
            if metric in ("reward_tokens", "royalty_tokens"):
                earned[acct] = earned.get(acct, 0.0) + value
            elif metric == "cost":
                cost[acct] = cost.get(acct, 0.0) + value
        self._tallied = len(self.rows)
        attackers = self._attacker_identities()
        total = sum(earned.values())
        if total > 0:
            share = sum(v for a, v in earned.items() if a in attackers) / total
            self.rows.append((round_, "global", "attacker_token_share", share))
        honest = [a for a in self.accounts if a not in attackers]
        if honest:
            profit = float(np.mean([earned.get(a, 0.0) - cost.get(a, 0.0) for a in honest]))
            self.rows.append((round_, "global", "honest_profit", profit))

    # ------------------------------------------------------- contribution scores

    def _root_update(self, round_: int, global_weights: Weights) -> Weights:
        """FLTrust's server update: one round of local training on the root set."""
        sc = self.scenario
        model = build_model(
            sc.model, self.data.input_shape, self.data.num_classes, self.tree.torch("root", round_)
        )
        load_numpy(model, global_weights)
        from simulation.fl.training import local_train

        local_train(
            model,
            self.data.x_val,
            self.data.y_val,
            self.data.input_shape,
            sc.training,
            None,
            self.tree.torch("root-train", round_),
        )
        return state_to_numpy(model)

    def _flat(self, weights: Weights) -> np.ndarray:
        return np.concatenate([weights[k].astype(np.float64).ravel() for k in self.weights])

    def _unflat(self, flat: np.ndarray) -> Weights:
        out: Weights = {}
        i = 0
        for k, v in self.weights.items():
            out[k] = flat[i : i + v.size].reshape(v.shape).astype(v.dtype)
            i += v.size
        return out

    def _val_accuracy(self, flat: np.ndarray) -> float:
        load_numpy(self.eval_model, self._unflat(flat))
        return evaluate(self.eval_model, self.data.x_val, self.data.y_val, self.data.input_shape)[1]

    def _score(self, round_: int, accepted: list[Reply]) -> dict[str, float]:
        """Per-client contribution scores on the validation split (and the reference
        Shapley values the attack metrics compare rewards against)."""
        cfg = self.scenario.contribution
        if not accepted or (self.evaluator is None and not cfg.reference):
            return {}
        base = self._flat(self.weights)
        deltas = tuple(self._flat(r.weights) - base for r in accepted if r.weights is not None)
        counts = [int(r.metrics["num-examples"]) for r in accepted]
        utility = coalition_utility(base, deltas, counts, self._val_accuracy)
        data = RoundData(
            num_clients=len(accepted),
            utility=utility,
            updates=deltas,
            weights=tuple(float(c) for c in counts),
        )
        names = [self.accounts[r.client] for r in accepted]
        scores: dict[str, float] = {}
        assert self.market is not None
        if self.evaluator is not None:
            res = self.evaluator.evaluate(data, rng=self.tree.numpy("contribution", round_))
            scores = dict(zip(names, (float(v) for v in res.scores), strict=True))
            # The ledger's quality is in [0, 1]: the best contributor of the round gets 1,
            # a harmful (negative) one 0. Reputation builds on it.
            top = max((abs(v) for v in scores.values()), default=0.0)
            for acct, v in scores.items():
                self.rows.append((round_, acct, "contribution_score", v))
                quality = min(max(v / top, 0.0), 1.0) if top > 0 else 0.0
                self.market.record_quality(round=round_, client=acct, score=quality)
            self.rows.append((round_, "global", "contribution_utility_calls", res.utility_calls))
        if cfg.reference:
            ref_name = "exact_shapley" if len(accepted) <= cfg.exact_max_clients else "gtg_shapley"
            ref = create_evaluator(ref_name).evaluate(
                data, rng=self.tree.numpy("reference", round_)
            )
            for acct, v in zip(names, ref.scores, strict=True):
                self.rows.append((round_, acct, "true_contribution", float(v)))
        return scores

    def _backdoor_success(self) -> float:
        """Share of triggered test inputs (true label ≠ target) classified as the target."""
        found = self.population.backdoor()
        if found is None:
            return float("nan")
        behaviour, _ = found
        target = int(behaviour.params.target_label)  # type: ignore[attr-defined]
        keep = self.data.y_test != target
        if not keep.any():
            return float("nan")
        x = behaviour.apply_trigger(self.data.x_test[keep])  # type: ignore[attr-defined]
        from simulation.fl.training import predict

        pred = predict(self.model, x, self.data.input_shape).argmax(axis=1)
        return float((pred == target).mean())

    def _aggregate(self, round_: int, accepted: list[Reply]) -> Weights:
        """Aggregate with the Flower strategy (replies sorted by client)."""
        from flwr.app import Array, ArrayRecord

        msgs = []
        for r in accepted:
            assert r.weights is not None
            msgs.append(
                aggregation_reply(round_, r.client, r.weights, int(r.metrics["num-examples"]))
            )
        from simulation.fl.strategies import NeedsGlobal

        if isinstance(self.strategy, NeedsGlobal):
            self.strategy.set_global(
                ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in self.weights.items()})
            )
        arrays, _ = self.strategy.aggregate_train(round_, msgs)
        weights = getattr(self.strategy, "last_weights", None)
        if weights:
            for client, w in sorted(weights.items()):
                acct = self.accounts[int(client)]
                self.rows.append((round_, acct, "aggregation_weight", float(w)))
                if float(w) < self.scenario.aggregation.flag_below:
                    self.rows.append((round_, acct, "flagged", 1.0))
        if arrays is None:
            log.warning("round %d: the strategy returned no model; keeping the last one", round_)
            return self.weights
        out = {k: np.asarray(v.numpy()) for k, v in arrays.items()}
        return {k: out[k].astype(self.weights[k].dtype, copy=False) for k in self.weights}

    def _federation(self) -> Generator[simpy.Event, Any, None]:
        try:
            for r in range(1, self.scenario.rounds + 1):
                yield from self._round(r)
        except Exception as exc:
            # simpy re-creates a process's exception from its args, which loses typed
            # errors' fields; keep the original and raise it after the clock stops.
            self._failure = exc

    # --------------------------------------------------------------------- run

    def _test_results(self) -> dict[str, float]:
        """The registry's validation results of the current global model on the test split."""
        load_numpy(self.model, self.weights)
        return validation_results(
            self.model,
            self.data.x_test,
            self.data.y_test,
            self.data.input_shape,
            self.data.num_classes,
            self.flops,
        )

    def _evaluate_initial(self) -> None:
        res = self._test_results()
        self.rounds.append(
            RoundRecord(
                0,
                0.0,
                0.0,
                0,
                0,
                0,
                len(self.active),
                res["accuracy"],
                res["loss"],
                0.0,
                0.0,
                0.0,
                backdoor_success=self._backdoor_success(),
            )
        )

    def run(self) -> WorldResult:
        """Run the whole scenario; the ledger is closed (and verifiable) whatever happens."""
        torch.set_num_threads(1)
        self.market = self._open_market()
        try:
            self._evaluate_initial()
            self._failure: Exception | None = None
            self._start_market(self.market)
            federation = self.env.process(self._federation())
            # Market processes run forever; the run ends with the federation.
            self.env.run(until=federation)
            if self._failure is not None:
                raise self._failure
            head = self.market.head_hash
            market_stats = self._market_stats()
            ledger = self.market.summary()
        finally:
            self.market.close()
        final_eps = {a: self.privacy.spent(a) for a in self.accounts} if self.dp else {}
        return WorldResult(
            rounds=self.rounds,
            client_rows=self.rows,
            final_weights=self.weights,
            head_hash=head,
            ground_truth=self._ground_truth(),
            final_epsilon=final_eps,
            market=market_stats,
            ledger=ledger,
        )


def in_process_transport(tasks: list[ClientTask], weights: Weights) -> list[Reply]:
    """Run each task directly in this process (no Flower): the baseline loop."""
    out = []
    for task in tasks:
        try:
            res = run_client_task(task, weights)
        except Exception as exc:
            out.append(Reply(task.client_index, None, {}, error=f"client error: {exc}"))
            continue
        out.append(
            Reply(
                task.client_index,
                res.weights,
                {
                    "num-examples": res.num_examples,
                    "steps": res.steps,
                    "sample-rate": res.sample_rate,
                    "train-loss": res.train_loss if math.isfinite(res.train_loss) else -1.0,
                    "train-accuracy": res.train_accuracy
                    if math.isfinite(res.train_accuracy)
                    else -1.0,
                },
            )
        )
    return out
