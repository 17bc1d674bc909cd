"""Paying for the round: the incentive mechanism's emission and license royalties."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from marketplace import TOKEN, Market
from marketplace.incentives import (
    Allocation,
    ContributionInfo,
    IncentiveMechanism,
    RoundOutcome,
)
from marketplace.state import pool_account
from simulation import names
from simulation.world.context import Federation, Recorder, RoundContext

__all__ = ["Reward", "SettleRevenue", "round_outcome"]


def round_outcome(ctx: RoundContext, fed: Federation, emission: int) -> RoundOutcome:
    """What a mechanism is told about the round: accepted contributions with their
    claimed sizes and scores, rejected ones, and the budget ``emission``."""
    infos = [
        ContributionInfo(
            account=fed.account(r.client),
            num_examples=r.num_examples,
            accepted=True,
            score=ctx.scores.get(fed.account(r.client)),
        )
        for r in ctx.accepted
    ] + [ContributionInfo(account=a, num_examples=0, accepted=False) for a in ctx.rejected]
    return RoundOutcome(
        round=ctx.round,
        emission=emission,
        contributions=tuple(sorted(infos, key=lambda i: i.account)),
    )


class Reward:
    """The mechanism scores, allocates and settles the round's emission (and slashes).
    The emission halves every ``halving_rounds`` rounds when the ledger's schedule
    says so (``market.params``), exactly as the ledger caps it: base units >> (round //
    halving_rounds). Revenue-funded mechanisms (royalties) pay nothing here. A round
    whose aggregation failed built no model, so its emission is 0: nothing is minted,
    slashes still apply."""

    name: ClassVar[str] = "reward"

    def __init__(
        self,
        mechanism: IncentiveMechanism,
        emission_per_round: float,
        market: Market,
        fed: Federation,
        rec: Recorder,
        halving_rounds: int | None = None,
    ) -> None:
        self.mechanism = mechanism
        self.emission = round(emission_per_round * TOKEN)
        self.halving_rounds = halving_rounds
        self.market = market
        self.fed = fed
        self.rec = rec

    def emission_of(self, round_: int) -> int:
        """Base units this round emits under the schedule."""
        return (
            self.emission >> (round_ // self.halving_rounds)
            if self.halving_rounds
            else self.emission
        )

    def run(self, ctx: RoundContext) -> None:
        if self.mechanism.funding == "revenue":
            allocation = Allocation(ctx.round, {}, (), self.mechanism.label, "revenue")
        else:
            emission = 0 if ctx.failure is not None else self.emission_of(ctx.round)
            allocation = self.mechanism.run(round_outcome(ctx, self.fed, emission))
        shortfall = self.market.state.slash_shortfall
        before = {d.account: shortfall(d.account) for d in allocation.slashes}
        self.mechanism.settle(allocation, self.market)
        ctx.issued = sum(allocation.amounts.values())
        for account, amount in sorted(allocation.amounts.items()):
            self.rec.add(ctx.round, account, names.REWARD_TOKENS, amount / TOKEN)
        asked = {d.account: 0 for d in allocation.slashes}
        for d in allocation.slashes:
            asked[d.account] += d.amount
        for account, amount in asked.items():
            # What was burned: the slash less what the stake could not cover.
            burned = amount - (shortfall(account) - before[account])
            self.rec.add(ctx.round, account, names.FLAGGED, 1.0)
            self.rec.add(ctx.round, account, names.SLASHED_TOKENS, burned / TOKEN)


@dataclass
class SettleRevenue:
    """Pay every version's licence revenue through the royalties mechanism: the
    platform fee to the treasury, the rest by the shares the version recorded (its
    ``revenue_share`` rule's weights, see :class:`RegisterVersion`). ``royalties`` is
    the scenario's own when it names ``royalties`` (its wrappers included), else one
    with the ledger's fee."""

    name: ClassVar[str] = "settle_revenue"

    market: Market
    fed: Federation
    rec: Recorder
    royalties: IncentiveMechanism

    def run(self, ctx: RoundContext) -> None:
        paid = 0
        book = self.fed.identities
        for v in self.market.versions():
            pool = self.market.balance(pool_account(v.version))
            if pool <= 0:
                continue
            sale = RoundOutcome.license_sale(
                round=ctx.round, revenue=pool, contributors=v.contributors
            )
            split = self.royalties.run(sale).amounts
            for entry in self.market.distribute_revenue(v.version, split):
                account = str(entry.data["to"])
                ident = book.get(account)
                if ident is not None and book.current(ident.client) == account:
                    amount = int(entry.data["amount"]) / TOKEN  # type: ignore[arg-type]
                    self.rec.add(ctx.round, account, names.ROYALTY_TOKENS, amount)
            paid += pool
        ctx.royalties = paid / TOKEN
