"""Incentive mechanisms: who gets how many tokens for a round.

A mechanism is a small ABC with three hooks and one template method, the way
Flower's ``Strategy`` owns its round loop through ``start()``:

``score(outcome) -> weights``
    a non-negative weight per *eligible* account (accepted contributions only);
``allocate(outcome, weights) -> Allocation``
    integer token base units summing exactly to the budget (largest-remainder
    rounding, ties broken by account id), plus any slash decisions;
``settle(allocation, market)``
    applies the allocation through the ``Market`` facade.

:meth:`IncentiveMechanism.run` owns the order. Wrappers (:class:`Capped`,
:class:`MinimumQuality`) take ``inner=`` and forward what they do not change,
as Flower's differential-privacy wrappers wrap a strategy.

Registry :data:`MECHANISMS` (names used by scenario files):

``equal``        every accepted contribution gets the same share;
``data_size``    proportional to ``num_examples`` (FedAvg's weighting);
``score``        proportional to an evaluator's score (e.g. GTG-Shapley,
                 Liu et al. 2022), negative scores clipped to 0;
``reputation``   proportional to a reputation mapping (Kang et al. 2019,
                 "Incentive Mechanism for Reliable Federated Learning");
``stake_slash``  pays like a base mechanism, and emits slash decisions for
                 participants a detector flags (staking as a deterrent);
``royalties``    license revenue of a model version paid to its contributors
                 by share, after a platform fee.

Each mechanism declares where its budget comes from (:attr:`funding`):
``"emission"`` is newly minted per round (``market.reward``), ``"revenue"`` is
money already paid into the treasury (``market.transfer``).

This module never imports the ledger: settlement goes through the
:class:`SettlementMarket` protocol, which ``marketplace.Market`` satisfies.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Protocol

from marketplace.registry_base import Registry
from marketplace.rounding import largest_remainder

__all__ = [
    "MECHANISMS",
    "Allocation",
    "Capped",
    "ContributionInfo",
    "DataSizeMechanism",
    "Detector",
    "EqualMechanism",
    "Funding",
    "IncentiveMechanism",
    "MechanismWrapper",
    "MinimumQuality",
    "ReputationMechanism",
    "RoundOutcome",
    "RoyaltiesMechanism",
    "ScoreMechanism",
    "SettlementMarket",
    "SlashDecision",
    "StakeSlashMechanism",
    "create_mechanism",
    "flag_rejected",
    "largest_remainder",
]

logger = logging.getLogger("fedmarket.incentives")

Funding = Literal["emission", "revenue"]

#: Basis points in one whole (a 2.5 % fee is 250 bps); fees are integers like money.
BPS = 10_000


# --------------------------------------------------------------------------- #
# Data types
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ContributionInfo:
    """One account's contribution in a round, as the mechanism may see it.

    ``accepted`` is the validation verdict; ``score`` comes from any
    contribution evaluator (``None`` when none ran). Ground truth about
    attackers is never here.
    """

    account: str
    num_examples: int
    accepted: bool
    score: float | None = None

    def __post_init__(self) -> None:
        if not self.account:
            raise ValueError("ContributionInfo.account must be a non-empty string")
        if self.num_examples < 0:
            raise ValueError(
                f"ContributionInfo.num_examples of {self.account!r} is {self.num_examples} < 0"
            )
        if self.score is not None and not math.isfinite(self.score):
            raise ValueError(f"ContributionInfo.score of {self.account!r} is {self.score}")


@dataclass(frozen=True)
class RoundOutcome:
    """Everything a mechanism is told about a round: its budget and contributions."""

    round: int
    emission: int
    contributions: tuple[ContributionInfo, ...]

    def __post_init__(self) -> None:
        if self.emission < 0:
            raise ValueError(f"RoundOutcome.emission is {self.emission} < 0")
        accounts = [c.account for c in self.contributions]
        duplicates = sorted({a for a in accounts if accounts.count(a) > 1})
        if duplicates:
            raise ValueError(f"RoundOutcome has duplicate accounts: {duplicates}")

    @classmethod
    def license_sale(
        cls, *, round: int, revenue: int, contributors: Mapping[str, float]
    ) -> RoundOutcome:
        """Outcome for :class:`RoyaltiesMechanism`: a version's contributor shares as scores.

        ``contributors`` is the mapping recorded by
        ``Market.register_model_version`` (account -> share).
        """
        return cls(
            round=round,
            emission=revenue,
            contributions=tuple(
                ContributionInfo(account=a, num_examples=0, accepted=True, score=float(s))
                for a, s in sorted(contributors.items())
            ),
        )


@dataclass(frozen=True)
class SlashDecision:
    """Take ``amount`` base units of ``account``'s stake, for ``reason``."""

    account: str
    amount: int
    reason: str

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError(f"SlashDecision.amount for {self.account!r} must be > 0")


@dataclass(frozen=True)
class Allocation:
    """A mechanism's decision for one round.

    ``amounts`` lists every contributor (0 for ineligible ones) and sums to
    the budget, or is empty when nobody was eligible and the budget is not
    spent. It is stored read-only, sorted by account id.
    """

    round: int
    amounts: Mapping[str, int]
    slashes: tuple[SlashDecision, ...]
    mechanism: str
    funding: Funding = "emission"

    def __post_init__(self) -> None:
        for account, amount in self.amounts.items():
            if amount < 0:
                raise ValueError(f"Allocation amount for {account!r} is {amount} < 0")
        ordered = MappingProxyType({a: int(self.amounts[a]) for a in sorted(self.amounts)})
        object.__setattr__(self, "amounts", ordered)

    @property
    def spent(self) -> int:
        """Total base units handed out."""
        return sum(self.amounts.values())


class SettlementMarket(Protocol):
    """The part of ``marketplace.Market`` that settlement needs (see ARCHITECTURE.md)."""

    def reward(self, *, round: int, allocations: Mapping[str, int], mechanism: str) -> Any: ...

    def slash(self, account: str, amount: int, *, reason: str) -> Any: ...

    def transfer(self, sender: str, to: str, amount: int, *, memo: str = "") -> Any: ...


# --------------------------------------------------------------------------- #
# Rounding
# --------------------------------------------------------------------------- #


# --------------------------------------------------------------------------- #
# The ABC and its template method
# --------------------------------------------------------------------------- #


class IncentiveMechanism(ABC):
    """Hooks ``score → allocate → settle``; :meth:`run` owns the order."""

    #: Registry name, also written to the ledger with each reward.
    name: ClassVar[str] = "mechanism"
    #: Where the budget comes from: minted emission or revenue already in the treasury.
    funding: ClassVar[Funding] = "emission"

    @property
    def label(self) -> str:
        """Name recorded on the ledger; wrappers show what they wrap, ``capped(score)``."""
        return self.name

    def budget(self, outcome: RoundOutcome) -> int:
        """Base units this mechanism distributes for ``outcome``: the whole emission."""
        return outcome.emission

    @abstractmethod
    def score(self, outcome: RoundOutcome) -> dict[str, float]:
        """Non-negative weight per eligible account; rejected contributions are absent."""

    def allocate(self, outcome: RoundOutcome, weights: Mapping[str, float]) -> Allocation:
        """Split :meth:`budget` by ``weights``; contributors without weight get 0."""
        shares = largest_remainder(self.budget(outcome), weights)
        amounts: dict[str, int] = {}
        if shares:
            amounts = {c.account: 0 for c in outcome.contributions}
            amounts.update(shares)
        else:
            logger.info(
                "round %d: no eligible contribution, %s spends nothing", outcome.round, self.label
            )
        return Allocation(
            round=outcome.round,
            amounts=amounts,
            slashes=(),
            mechanism=self.label,
            funding=self.funding,
        )

    def settle(self, allocation: Allocation, market: SettlementMarket) -> None:
        """Mint positive amounts via ``market.reward``, then apply slashes."""
        paid = {a: x for a, x in allocation.amounts.items() if x > 0}
        if paid:
            market.reward(round=allocation.round, allocations=paid, mechanism=allocation.mechanism)
        for decision in allocation.slashes:
            market.slash(decision.account, decision.amount, reason=decision.reason)

    def run(self, outcome: RoundOutcome, market: SettlementMarket | None = None) -> Allocation:
        """Template method: score, allocate, and settle when a market is given."""
        weights = self.score(outcome)
        allocation = self.allocate(outcome, weights)
        logger.debug(
            "round %d: %s allocated %d of %d to %d accounts, %d slashes",
            outcome.round,
            allocation.mechanism,
            allocation.spent,
            outcome.emission,
            len(allocation.amounts),
            len(allocation.slashes),
        )
        if market is not None:
            self.settle(allocation, market)
        return allocation


# --------------------------------------------------------------------------- #
# Mechanisms
# --------------------------------------------------------------------------- #


class EqualMechanism(IncentiveMechanism):
    """``equal``: same weight for every accepted contribution.

    The baseline of the FL incentive literature: fair to participation, blind
    to quality, and so an open door to free-riders.
    """

    name = "equal"

    def score(self, outcome: RoundOutcome) -> dict[str, float]:
        return {c.account: 1.0 for c in outcome.contributions if c.accepted}


class DataSizeMechanism(IncentiveMechanism):
    """``data_size``: proportional to the claimed ``num_examples`` (FedAvg's weights).

    Rewards what the aggregate already weights by, but the size is
    self-reported, which is why score-based mechanisms exist.
    """

    name = "data_size"

    def score(self, outcome: RoundOutcome) -> dict[str, float]:
        return {
            c.account: float(c.num_examples)
            for c in outcome.contributions
            if c.accepted and c.num_examples > 0
        }


class ScoreMechanism(IncentiveMechanism):
    """``score``: proportional to a contribution score, negatives clipped to 0.

    Fed with Shapley-family values (FedSV, Wang et al. 2020; GTG-Shapley, Liu
    et al. 2022), harmful updates score below 0 and so get nothing rather
    than a negative payment, which the ledger cannot express.
    """

    name = "score"

    def score(self, outcome: RoundOutcome) -> dict[str, float]:
        weights: dict[str, float] = {}
        for c in outcome.contributions:
            if not c.accepted:
                continue
            if c.score is None:
                raise ValueError(
                    f"mechanism 'score' needs a score for accepted contribution of {c.account!r}"
                )
            if c.score > 0:
                weights[c.account] = c.score
        return weights


class ReputationMechanism(IncentiveMechanism):
    """``reputation``: proportional to each account's reputation.

    Reputation-weighted payment (Kang et al. 2019) makes past behaviour pay:
    ``reputation`` may be a live mapping that the reputation system updates
    between rounds. Unknown accounts get ``default``; negative values count 0.
    """

    name = "reputation"

    runtime_params: ClassVar[tuple[str, ...]] = ("reputation",)
    """Supplied by the run (the ledger's live reputations), not by a scenario."""

    def __init__(self, *, reputation: Mapping[str, float], default: float = 0.0) -> None:
        if not math.isfinite(default) or default < 0:
            raise ValueError(f"default reputation must be finite and >= 0, got {default}")
        self.reputation = reputation
        self.default = default

    def score(self, outcome: RoundOutcome) -> dict[str, float]:
        weights: dict[str, float] = {}
        for c in outcome.contributions:
            if c.accepted:
                value = float(self.reputation.get(c.account, self.default))
                if value > 0:
                    weights[c.account] = value
        return weights


Detector = Callable[[ContributionInfo], str | None]
"""Returns a slash reason for a contribution it flags, ``None`` otherwise."""


def flag_rejected(min_score: float | None = None) -> Detector:
    """Default detector: flag rejected contributions, and scores below ``min_score``."""

    def detect(contribution: ContributionInfo) -> str | None:
        if not contribution.accepted:
            return "contribution rejected by validation"
        if (
            min_score is not None
            and contribution.score is not None
            and contribution.score < min_score
        ):
            return f"contribution score {contribution.score:.6g} below {min_score:.6g}"
        return None

    return detect


class StakeSlashMechanism(IncentiveMechanism):
    """``stake_slash``: pay like ``base``, slash ``slash_amount`` from flagged stakes.

    Staking turns misbehaviour into a loss, not just a missed reward (the
    deterrent of blockchain FL designs such as BlockFL, Kim et al. 2019).
    Flagged accounts are excluded from payment unless ``pay_flagged``.
    """

    name = "stake_slash"

    def __init__(
        self,
        *,
        slash_amount: int,
        base: IncentiveMechanism | str = "equal",
        detector: Detector | None = None,
        min_score: float | None = None,
        pay_flagged: bool = False,
    ) -> None:
        if slash_amount <= 0:
            raise ValueError(f"slash_amount must be > 0, got {slash_amount}")
        if detector is not None and min_score is not None:
            raise ValueError("give either detector or min_score, not both")
        self.slash_amount = slash_amount
        self.base = create_mechanism(base) if isinstance(base, str) else base
        self.detector = detector if detector is not None else flag_rejected(min_score)
        self.pay_flagged = pay_flagged

    @property
    def label(self) -> str:
        return f"{self.name}({self.base.label})"

    @property
    def funding(self) -> Funding:  # type: ignore[override]
        return self.base.funding

    def budget(self, outcome: RoundOutcome) -> int:
        return self.base.budget(outcome)

    def settle(self, allocation: Allocation, market: SettlementMarket) -> None:
        self.base.settle(allocation, market)

    def _flags(self, outcome: RoundOutcome) -> dict[str, str]:
        flags: dict[str, str] = {}
        for c in outcome.contributions:
            reason = self.detector(c)
            if reason is not None:
                flags[c.account] = reason
        return flags

    def score(self, outcome: RoundOutcome) -> dict[str, float]:
        weights = self.base.score(outcome)
        if self.pay_flagged:
            return weights
        flagged = self._flags(outcome)
        return {a: w for a, w in weights.items() if a not in flagged}

    def allocate(self, outcome: RoundOutcome, weights: Mapping[str, float]) -> Allocation:
        paid = self.base.allocate(outcome, weights)
        slashes = tuple(
            SlashDecision(account=a, amount=self.slash_amount, reason=reason)
            for a, reason in sorted(self._flags(outcome).items())
        )
        return Allocation(
            round=paid.round,
            amounts=paid.amounts,
            slashes=paid.slashes + slashes,
            mechanism=self.label,
            funding=paid.funding,
        )


class RoyaltiesMechanism(IncentiveMechanism):
    """``royalties``: a license sale's revenue to the version's contributors by share.

    The outcome is :meth:`RoundOutcome.license_sale`: ``emission`` is the
    revenue, already paid into ``treasury``; each contributor's ``score`` is
    its share. The platform keeps ``platform_fee_bps`` (rounded down) and the
    rest is split by share; the fee appears as the ``treasury`` line, so the
    amounts still sum to the revenue. Settlement transfers from the treasury.
    """

    name = "royalties"
    funding = "revenue"

    def __init__(self, *, platform_fee_bps: int = 1_000, treasury: str = "treasury") -> None:
        if not 0 <= platform_fee_bps <= BPS:
            raise ValueError(f"platform_fee_bps must be in 0..{BPS}, got {platform_fee_bps}")
        self.platform_fee_bps = platform_fee_bps
        self.treasury = treasury

    def fee(self, outcome: RoundOutcome) -> int:
        """The platform's cut of the revenue, in base units."""
        return outcome.emission * self.platform_fee_bps // BPS

    def budget(self, outcome: RoundOutcome) -> int:
        return outcome.emission - self.fee(outcome)

    def score(self, outcome: RoundOutcome) -> dict[str, float]:
        return {
            c.account: c.score
            for c in outcome.contributions
            if c.accepted and c.score is not None and c.score > 0
        }

    def allocate(self, outcome: RoundOutcome, weights: Mapping[str, float]) -> Allocation:
        paid = super().allocate(outcome, weights)
        if not paid.amounts:
            return paid
        amounts = dict(paid.amounts)
        amounts[self.treasury] = amounts.get(self.treasury, 0) + self.fee(outcome)
        return Allocation(
            round=paid.round,
            amounts=amounts,
            slashes=paid.slashes,
            mechanism=paid.mechanism,
            funding=paid.funding,
        )

    def settle(self, allocation: Allocation, market: SettlementMarket) -> None:
        """Transfer each contributor's royalty out of the treasury; the fee stays there."""
        for account, amount in allocation.amounts.items():
            if amount > 0 and account != self.treasury:
                market.transfer(
                    self.treasury,
                    account,
                    amount,
                    memo=f"royalty round {allocation.round} ({allocation.mechanism})",
                )
        for decision in allocation.slashes:
            market.slash(decision.account, decision.amount, reason=decision.reason)


# --------------------------------------------------------------------------- #
# Wrappers
# --------------------------------------------------------------------------- #


class MechanismWrapper(IncentiveMechanism):
    """Forwards every hook to ``inner``; subclasses override only what they change."""

    def __init__(self, *, inner: IncentiveMechanism) -> None:
        self.inner = inner

    @property
    def label(self) -> str:
        return f"{self.name}({self.inner.label})"

    @property
    def funding(self) -> Funding:  # type: ignore[override]
        return self.inner.funding

    def budget(self, outcome: RoundOutcome) -> int:
        return self.inner.budget(outcome)

    def score(self, outcome: RoundOutcome) -> dict[str, float]:
        return self.inner.score(outcome)

    def allocate(self, outcome: RoundOutcome, weights: Mapping[str, float]) -> Allocation:
        inner = self.inner.allocate(outcome, weights)
        return _relabel(inner, self.label)

    def settle(self, allocation: Allocation, market: SettlementMarket) -> None:
        self.inner.settle(allocation, market)


def _relabel(
    allocation: Allocation, label: str, amounts: Mapping[str, int] | None = None
) -> Allocation:
    return Allocation(
        round=allocation.round,
        amounts=allocation.amounts if amounts is None else amounts,
        slashes=allocation.slashes,
        mechanism=label,
        funding=allocation.funding,
    )


class Capped(MechanismWrapper):
    """Limit any one account to ``max_share`` of the budget; excess goes to the others.

    A cap bounds what a single (possibly Sybil-inflated or lucky) account can
    extract per round. The excess is re-split proportionally among uncapped
    accounts until no one is over the cap (water-filling). If the cap is
    infeasible (``max_share × eligible < 1``) the part nobody may take is not
    spent, so the amounts then sum to less than the budget. Only the
    mechanism's own recipients are capped; a royalties fee line is not.
    """

    name = "capped"

    def __init__(self, *, inner: IncentiveMechanism, max_share: float) -> None:
        super().__init__(inner=inner)
        if not 0 < max_share <= 1:
            raise ValueError(f"max_share must be in (0, 1], got {max_share}")
        self.max_share = max_share

    def allocate(self, outcome: RoundOutcome, weights: Mapping[str, float]) -> Allocation:
        base = self.inner.allocate(outcome, weights)
        budget = self.inner.budget(outcome)
        # Decimal reading of the float, so max_share=0.6 of 100 is 60, not 59.
        cap = math.floor(Fraction(str(self.max_share)) * budget)
        # Water-fill over the inner allocation itself, so wrappers nest.
        eligible = {a: base.amounts[a] for a in weights if base.amounts.get(a, 0) > 0}
        fixed: dict[str, int] = {}
        remaining = sum(eligible.values())
        while eligible:
            shares = largest_remainder(remaining, dict(eligible))
            over = sorted(a for a, x in shares.items() if x > cap)
            if not over:
                fixed.update(shares)
                remaining = 0
                break
            for account in over:
                fixed[account] = cap
                remaining -= cap
                del eligible[account]
        if remaining:
            logger.info(
                "round %d: cap %.3g leaves %d base units unspent",
                outcome.round,
                self.max_share,
                remaining,
            )
        amounts = dict(base.amounts)
        for account in amounts:
            if account in weights:
                amounts[account] = fixed.get(account, 0)
        return _relabel(base, self.label, amounts)


class MinimumQuality(MechanismWrapper):
    """Treat contributions scoring below ``min_score`` (or unscored) as rejected.

    A quality gate in front of any mechanism: e.g. ``data_size`` behind
    ``MinimumQuality(min_score=0)`` stops paying by claimed size for updates
    that an evaluator found harmful.
    """

    name = "min_quality"

    def __init__(
        self, *, inner: IncentiveMechanism, min_score: float, require_score: bool = True
    ) -> None:
        super().__init__(inner=inner)
        if not math.isfinite(min_score):
            raise ValueError(f"min_score must be finite, got {min_score}")
        self.min_score = min_score
        self.require_score = require_score

    def _gate(self, outcome: RoundOutcome) -> RoundOutcome:
        def passes(c: ContributionInfo) -> bool:
            if c.score is None:
                return not self.require_score
            return c.score >= self.min_score

        return RoundOutcome(
            round=outcome.round,
            emission=outcome.emission,
            contributions=tuple(
                c if not c.accepted or passes(c) else _rejected(c) for c in outcome.contributions
            ),
        )

    def budget(self, outcome: RoundOutcome) -> int:
        return self.inner.budget(self._gate(outcome))

    def score(self, outcome: RoundOutcome) -> dict[str, float]:
        return self.inner.score(self._gate(outcome))

    def allocate(self, outcome: RoundOutcome, weights: Mapping[str, float]) -> Allocation:
        return _relabel(self.inner.allocate(self._gate(outcome), weights), self.label)


def _rejected(c: ContributionInfo) -> ContributionInfo:
    return ContributionInfo(
        account=c.account, num_examples=c.num_examples, accepted=False, score=c.score
    )


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #

MECHANISMS: Registry[Callable[..., IncentiveMechanism]] = Registry("incentive mechanism")
for _cls in (
    EqualMechanism,
    DataSizeMechanism,
    ScoreMechanism,
    ReputationMechanism,
    StakeSlashMechanism,
    RoyaltiesMechanism,
):
    MECHANISMS.register(_cls.name, _cls)


def create_mechanism(
    name: str,
    *,
    max_share: float | None = None,
    min_score: float | None = None,
    **params: Any,
) -> IncentiveMechanism:
    """Build the mechanism a scenario names, optionally wrapped.

    ``create_mechanism("data_size", min_score=0.0, max_share=0.3)`` is
    ``Capped(MinimumQuality(DataSize))``: the gate applies first, the cap last.
    For ``stake_slash``, ``min_score`` is the detector's threshold instead.
    Unknown names raise ``ValueError`` listing the valid ones; unknown
    parameters raise ``TypeError`` from the constructor.
    """
    factory = MECHANISMS.get(name)
    if name == StakeSlashMechanism.name:
        mechanism = factory(min_score=min_score, **params)
    else:
        mechanism = factory(**params)
        if min_score is not None:
            mechanism = MinimumQuality(inner=mechanism, min_score=min_score)
    if max_share is not None:
        mechanism = Capped(inner=mechanism, max_share=max_share)
    return mechanism
