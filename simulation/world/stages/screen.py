"""From replies to contributions: privacy accounting, the server's checks, costs,
and the ledger entries of every accepted or rejected update."""

from __future__ import annotations

import logging
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

from marketplace import Market
from marketplace.canonical import JSON
from marketplace.errors import SignatureError
from simulation import names
from simulation.config.schema import MarketConfig
from simulation.fl.protocol import reason as rejection
from simulation.fl.weights import arrays_sha256
from simulation.world.accounting import ClientPrivacy
from simulation.world.context import Federation, Recorder, RoundContext, Screened
from simulation.world.costs import examples_processed, round_cost
from simulation.world.population import Population
from simulation.world.screening import check_update
from simulation.world.timing import TimeModel

__all__ = [
    "AccountPrivacy",
    "AdvanceClock",
    "ChargeCosts",
    "RecordContributions",
    "Screen",
]

log = logging.getLogger("fedmarket.world")


@dataclass
class AccountPrivacy:
    """Compose each reply's DP-SGD steps into its identity's accountant (rejected
    replies too: the client trained on its data either way)."""

    name: ClassVar[str] = "account_privacy"

    privacy: ClientPrivacy | None
    fed: Federation
    rec: Recorder

    def run(self, ctx: RoundContext) -> None:
        ctx.screened = []
        for reply in ctx.replies:
            entry = Screened(reply, self.fed.account(reply.client))
            if self.privacy is not None:
                entry.epsilon_before = self.privacy.spent(entry.account)
                if reply.steps > 0:
                    assert reply.metrics is not None
                    sigma = self.privacy.noise_for(reply.client)
                    step = (sigma, reply.metrics.sample_rate, reply.steps)
                    self.privacy.record(entry.account, step)
                entry.epsilon = self.privacy.spent(entry.account)
                self.rec.add(ctx.round, entry.account, names.EPSILON, entry.epsilon)
            ctx.screened.append(entry)


@dataclass
class Screen:
    """Each reply's simulated time and the server's checks: client errors, malformed
    or absurd updates, and stragglers past the round's deadline."""

    name: ClassVar[str] = "screen"

    time_model: TimeModel
    population: Population
    fed: Federation
    _: KW_ONLY
    base_epochs: int
    dp: bool
    max_update_norm: float
    deadline: float | None
    local_steps: int | None = None
    """``training.local_steps``: replies then train that many minibatches, not epochs."""
    batch_size: int = 1

    def seconds(self, ctx: RoundContext, entry: Screened) -> float:
        """Download, training on ``entry.processed`` examples and upload."""
        c = entry.reply.client
        secs = self.time_model.client_seconds(c, entry.processed, self.dp)
        speed = self.population.speed_factor(c, ctx.round, ctx.start)
        return secs * ctx.slowdowns.get(c, 1.0) / speed

    def run(self, ctx: RoundContext) -> None:
        deadline = self.deadline
        for entry in ctx.screened:
            reply = entry.reply
            epochs = self.population.epochs(reply.client, ctx.round, ctx.start, self.base_epochs)
            processed = examples_processed(
                reply.num_examples, epochs, local_steps=self.local_steps, batch_size=self.batch_size
            )
            entry.processed = processed if reply.trained else 0
            entry.seconds = self.seconds(ctx, entry)
            reason = reply.error
            if reason is None and reply.weights is not None:
                reason = check_update(self.fed.weights, reply.weights, self.max_update_norm)
            if reason is None and deadline is not None and entry.seconds > deadline:
                reason = rejection(
                    "straggler", f"{entry.seconds:.3g} s > deadline {deadline:.3g} s"
                )
                ctx.stragglers += 1
            if reason is None and reply.weights is None:
                reason = rejection("no_update")
            entry.reason = reason
            ctx.client_seconds.append(
                min(entry.seconds, deadline) if deadline is not None else entry.seconds
            )


@dataclass
class ChargeCosts:
    """A participant's cost of the round: compute if it trained (per round, and per
    example processed), plus the ε it spent
    at the scenario's price per ε (what net profit subtracts). A free-rider that
    trains nothing pays nothing: that is its advantage."""

    name: ClassVar[str] = "charge_costs"

    cfg: MarketConfig
    rec: Recorder

    def run(self, ctx: RoundContext) -> None:
        for entry in ctx.screened:
            spent = (entry.epsilon or 0.0) - entry.epsilon_before
            cost = round_cost(
                self.cfg,
                trained=entry.reply.trained,
                epsilon_spent=spent,
                processed=entry.processed,
            )
            self.rec.add(ctx.round, entry.account, names.COST, cost)


@dataclass
class RecordContributions:
    """Sign each screened reply onto the ledger: ``contribution`` (update hash,
    examples, cumulative ε, local metrics) or ``contribution_rejected`` (reason).

    In a DP run both carry the round's mechanism (σ, q, steps, δ, accountant) so
    ``fedmarket ledger verify`` re-derives each identity's ε with dp-accounting."""

    name: ClassVar[str] = "record_contributions"

    market: Market
    rec: Recorder
    privacy: ClientPrivacy | None = None
    node_signed: bool = False
    """Each node signed its own contribution (``--engine deployment``): the entry
    carries that signature, and one without a valid signature is refused."""

    def mechanism(self, entry: Screened) -> dict[str, JSON] | None:
        """The privacy record of ``entry``'s round: what AccountPrivacy composed."""
        if self.privacy is None:
            return None
        reply = entry.reply
        trained = reply.steps > 0 and reply.metrics is not None
        return self.privacy.mechanism(
            reply.client,
            reply.metrics.sample_rate if trained and reply.metrics else 0.0,
            reply.steps if trained else 0,
        )

    def record(self, entry: Screened, round_: int) -> str | None:
        """Append ``entry``'s accepted contribution; the refusal reason instead when
        the node had to sign it (``node_signed``) and its signature is missing or
        does not verify against its registered key (nothing is appended then)."""
        reply = entry.reply
        assert reply.weights is not None and reply.metrics is not None
        if self.node_signed and reply.signature is None:
            return rejection("bad_signature", "the node sent no signature")
        try:
            self.market.record_contribution(
                round=round_,
                client=entry.account,
                update_hash=arrays_sha256(reply.weights),
                num_examples=reply.num_examples,
                epsilon=entry.epsilon,
                metrics=reply.metrics.ledger_metrics(),
                privacy=self.mechanism(entry),
                signature=reply.signature if self.node_signed else None,
            )
        except SignatureError as exc:
            log.warning("round %d: %s", round_, exc)
            return rejection("bad_signature", "does not verify under the registered key")
        return None

    def reject(self, ctx: RoundContext, entry: Screened) -> None:
        """The platform's ``contribution_rejected`` entry for ``entry`` (its reason)."""
        account, reason = entry.account, entry.reason
        assert reason is not None
        ctx.rejected.append(account)
        self.market.reject_contribution(
            round=ctx.round,
            client=account,
            reason=reason,
            epsilon=entry.epsilon,
            privacy=self.mechanism(entry),
        )
        self.rec.add(ctx.round, account, names.REJECTED, 1.0)
        log.info("round %d: rejected %s: %s", ctx.round, account, reason)

    def run(self, ctx: RoundContext) -> None:
        for entry in ctx.screened:
            reply, account = entry.reply, entry.account
            if entry.reason is not None:
                self.reject(ctx, entry)
                continue
            refused = self.record(entry, ctx.round)
            if refused is not None:
                entry.reason = refused
                self.reject(ctx, entry)
                continue
            assert reply.metrics is not None
            metrics = reply.metrics.ledger_metrics()
            ctx.accepted.append(reply)
            self.rec.add(ctx.round, account, names.NUM_EXAMPLES, reply.num_examples)
            for key, metric in (
                ("train-loss", names.TRAIN_LOSS),
                ("train-accuracy", names.TRAIN_ACCURACY),
            ):
                if key in metrics:
                    self.rec.add(ctx.round, account, metric, metrics[key])


@dataclass
class AdvanceClock:
    """A synchronous round lasts as long as its slowest client (capped at the
    deadline) plus the server's time, and rounds start at most every interval."""

    name: ClassVar[str] = "advance_clock"

    time_model: TimeModel

    def run(self, ctx: RoundContext) -> float:
        ctx.duration = self.time_model.round_seconds(ctx.client_seconds)
        return ctx.duration
