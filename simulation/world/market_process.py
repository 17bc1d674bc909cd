"""Market processes on the world's simpy clock: behaviours emit, ``IntentApplier`` applies.

Market behaviours (``agents.market``) observe the market through :class:`MarketViewImpl`
and emit intents; :class:`IntentApplier` is the only place where those intents become
ledger transactions, through the ``Market`` facade (radCAD's policy / state-update split;
docs/ARCHITECTURE.md). A refused intent never crashes a run: the ``MarketplaceError`` is
caught and recorded as a platform-signed ``intent_refused`` entry, and counted.

Ground truth stays off the ledger: the *actual* usage behind an under-reported
``ReportUsage`` is known only to the simulation (``IntentApplier.counters``), exactly like
``ground_truth.json`` holds who is an attacker.

Wiring (in the world)::

    behaviours = {name: create_market_behaviour(name, params) for ...}
    applier = start_market_processes(env, market, behaviours,
                                     rng_for=lambda key: tree.numpy("market", key))
    ...
    env.run(until=...)
    applier.counters.as_dict()  # licenses sold, revenue, uses refused, fraud tokens, ...
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from agents.intents import (
    Bid,
    BuyLicense,
    Contribute,
    Join,
    Leave,
    Register,
    SetEffort,
    Stake,
    Unstake,
    UseLicense,
    Vote,
)
from agents.market import (
    LicenseInfo,
    LicenseTerms,
    MarketBehaviour,
    MarketIntent,
    ReportUsage,
    UseLicenseKey,
    VersionInfo,
)
from marketplace import TOKEN, Market
from marketplace.canonical import JSON
from marketplace.errors import LicenseError, MarketplaceError, TransactionError
from marketplace.state import License

__all__ = [
    "IntentApplier",
    "IntentOutcome",
    "MarketCounters",
    "MarketViewImpl",
    "RoundSignal",
    "start_market_processes",
]

log = logging.getLogger("fedmarket.market")


@dataclass(frozen=True, slots=True)
class IntentOutcome:
    """What became of one intent (handed to ``on_event``).

    Attributes:
        time: simulated time of application (s).
        source: the behaviour key that emitted it (``""`` when applied directly).
        intent: the intent itself.
        accepted: whether the market applied it.
        reason: why it was refused (``None`` when accepted).
        result: e.g. the license id of a purchase.
    """

    time: float
    source: str
    intent: MarketIntent
    accepted: bool
    reason: str | None = None
    result: str | None = None


@dataclass
class MarketCounters:
    """Aggregates the world reports. Token amounts are base units (``TOKEN`` per token)."""

    intents: int = 0
    refused: int = 0
    refused_by_kind: Counter[str] = field(default_factory=Counter)
    licenses_sold: int = 0
    licenses_by_type: Counter[str] = field(default_factory=Counter)
    revenue: int = 0
    uses_metered: int = 0
    uses_refused: int = 0
    shared_key_uses_refused: int = 0
    reported_uses: int = 0
    actual_uses: int = 0
    fraud_loss: int = 0
    votes_cast: int = 0
    votes_refused: int = 0
    joins: int = 0
    leaves: int = 0
    buyers_registered: int = 0

    def as_dict(self) -> dict[str, float]:
        """Flat numbers for a results table (token amounts also as ``*_tokens``)."""
        out: dict[str, float] = {
            "intents": self.intents,
            "intents_refused": self.refused,
            "licenses_sold": self.licenses_sold,
            "revenue_tokens": self.revenue / TOKEN,
            "uses_metered": self.uses_metered,
            "uses_refused": self.uses_refused,
            "shared_key_uses_refused": self.shared_key_uses_refused,
            "reported_uses": self.reported_uses,
            "actual_uses": self.actual_uses,
            "fraud_tokens": self.fraud_loss / TOKEN,
            "votes_cast": self.votes_cast,
            "votes_refused": self.votes_refused,
            "joins": self.joins,
            "leaves": self.leaves,
            "buyers_registered": self.buyers_registered,
        }
        for kind, n in sorted(self.licenses_by_type.items()):
            out[f"licenses_sold_{kind}"] = n
        return out


def _intent_json(intent: MarketIntent) -> dict[str, JSON]:
    data: dict[str, JSON] = {"intent": type(intent).__name__}
    for name in intent.__slots__:
        data[name] = getattr(intent, name)
    return data


class IntentApplier:
    """Applies intents through the ``Market`` facade; refusals are recorded, never raised.

    Args:
        market: the writable market.
        on_event: called with an :class:`IntentOutcome` after every intent (the world uses
            it to react to ``Join`` / ``Leave``, e.g. to change the active client set).
        buyer_budget: base units minted (reason ``"buyer_budget"``) to each buyer account
            the applier registers on its first ``BuyLicense`` (accounts first seen using a
            license, e.g. key sharers, are registered unfunded).
        voter_role: role under which an unknown voter is registered on its first vote;
            ``None`` (the default) refuses it: voters register explicitly (``Register``).
        clock: the simulated clock; defaults to the market's own clock.
    """

    def __init__(
        self,
        market: Market,
        *,
        on_event: Callable[[IntentOutcome], None] | None = None,
        buyer_budget: int = 100 * TOKEN,
        voter_role: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if buyer_budget < 0:
            raise ValueError(f"buyer_budget must be >= 0, got {buyer_budget}")
        self.market = market
        self.on_event = on_event
        self.buyer_budget = buyer_budget
        self.voter_role = voter_role
        self._clock = clock if clock is not None else market._now
        self._license_count = 0
        self._held: dict[tuple[str, str], list[str]] = {}
        self.counters = MarketCounters()
        self.departed: set[str] = set()
        """Accounts whose latest membership intent was ``Leave``."""

    # -- entry point -----------------------------------------------------------
    def apply(self, intent: MarketIntent, *, source: str = "") -> IntentOutcome:
        """Apply one intent now; returns (and reports) its outcome."""
        self.counters.intents += 1
        try:
            result = self._dispatch(intent)
        except MarketplaceError as exc:
            outcome = self._refuse(intent, source, str(exc))
        else:
            outcome = IntentOutcome(self._now(), source, intent, True, None, result)
        if self.on_event is not None:
            self.on_event(outcome)
        return outcome

    def emitter(self, source: str) -> Callable[[MarketIntent], None]:
        """An ``emit`` callable for a behaviour that tags its intents with ``source``."""

        def emit(intent: MarketIntent) -> None:
            self.apply(intent, source=source)

        return emit

    # -- helpers ---------------------------------------------------------------
    def _now(self) -> float:
        return float(self._clock())

    def _refuse(self, intent: MarketIntent, source: str, reason: str) -> IntentOutcome:
        kind = type(intent).__name__
        self.counters.refused += 1
        self.counters.refused_by_kind[kind] += 1
        if isinstance(intent, UseLicense | UseLicenseKey | ReportUsage):
            self.counters.uses_refused += 1
        if isinstance(intent, Vote):
            self.counters.votes_refused += 1
        data = _intent_json(intent)
        data.update(source=source, reason=reason)
        self.market.record("intent_refused", data)
        log.debug("refused %s from %s: %s", kind, source or "?", reason)
        return IntentOutcome(self._now(), source, intent, False, reason, None)

    def _registered(self, account: str) -> bool:
        return account in self.market.state.accounts

    def _ensure_buyer(self, buyer: str, *, fund: bool = True) -> None:
        """Register an unknown buyer; fund it only when it arrives to buy (not a key sharer)."""
        if self._registered(buyer):
            return
        with self.market.batch():
            self.market.register_participant(buyer, role="buyer")
            if fund and self.buyer_budget > 0:
                self.market.mint(buyer, self.buyer_budget, reason="buyer_budget")
        self.counters.buyers_registered += 1

    def _valid_license(self, buyer: str, version: str, units: int) -> License:
        """The buyer's most recent license on ``version`` that still allows ``units`` uses."""
        now = self._now()
        licenses = self.market.state.licenses
        while self._license_count < len(licenses):
            self._license_count += 1
            new = licenses[f"lic-{self._license_count:06d}"]
            self._held.setdefault((new.buyer, new.version), []).append(new.id)
        held = [licenses[i] for i in self._held.get((buyer, version), [])]
        if not held:
            raise LicenseError(f"holds no license on {version}", account=buyer, tx=f"use {version}")
        for lic in reversed(held):
            if (lic.expires_at is None or now < lic.expires_at) and (
                lic.max_uses is None or lic.uses + units <= lic.max_uses
            ):
                return lic
        return held[-1]  # expired or exhausted: the market refuses it with the reason

    def unit_price(self, version: str) -> int:
        """Price of one metered use of ``version``: its ``per_use`` price over ``max_uses``.

        0 when the version offers no per-use license.
        """
        terms = self.market.state.prices.get(version, {}).get("per_use")
        if terms is None:
            return 0
        return terms.price // (terms.max_uses or 1)

    # -- dispatch --------------------------------------------------------------
    def _dispatch(self, intent: MarketIntent) -> str | None:
        m, c = self.market, self.counters
        if isinstance(intent, BuyLicense):
            self._ensure_buyer(intent.buyer)
            price = m.state.prices.get(intent.version, {}).get(intent.license_type)
            lic_id = m.buy_license(intent.buyer, intent.version, intent.license_type)
            c.licenses_sold += 1
            c.licenses_by_type[intent.license_type] += 1
            c.revenue += price.price if price is not None else 0
            return lic_id
        if isinstance(intent, UseLicense):
            self._ensure_buyer(intent.buyer, fund=False)
            lic = self._valid_license(intent.buyer, intent.version, intent.uses)
            m.use_license(intent.buyer, lic.id, units=intent.uses)
            c.uses_metered += intent.uses
            return lic.id
        if isinstance(intent, UseLicenseKey):
            self._ensure_buyer(intent.user, fund=False)
            owner = m.state.licenses.get(intent.license_id)
            try:
                m.use_license(intent.user, intent.license_id, units=intent.uses)
            except LicenseError:
                if owner is not None and owner.buyer != intent.user:
                    c.shared_key_uses_refused += intent.uses
                raise
            c.uses_metered += intent.uses
            return intent.license_id
        if isinstance(intent, ReportUsage):
            return self._report(intent)
        if isinstance(intent, Vote):
            if not self._registered(intent.voter) and self.voter_role is not None:
                m.register_participant(intent.voter, role=self.voter_role)
            m.vote(intent.voter, intent.version, intent.rating)
            c.votes_cast += 1
            return None
        if isinstance(intent, Register):
            if not self._registered(intent.account):
                m.register_participant(intent.account, role=intent.role)
            return None
        if isinstance(intent, Join):
            with m.batch():
                if not self._registered(intent.account):
                    m.register_participant(intent.account, role=intent.role)
                m.record("participant_joined", {"account": intent.account, "role": intent.role})
            self.departed.discard(intent.account)
            c.joins += 1
            return None
        if isinstance(intent, Leave):
            if not self._registered(intent.account):
                raise TransactionError(
                    "not a registered account", account=intent.account, tx="leave"
                )
            m.record("participant_left", {"account": intent.account})
            self.departed.add(intent.account)
            c.leaves += 1
            return None
        if isinstance(intent, SetEffort):
            # A client may choose its effort before its first round, when it enrols.
            m.record("effort_set", {"account": intent.account, "epochs": intent.epochs})
            return None
        if isinstance(intent, Stake):
            m.stake(intent.account, intent.amount)
            return None
        if isinstance(intent, Unstake):
            m.unstake(intent.account, intent.amount)
            return None
        if isinstance(intent, Bid | Contribute):
            raise TransactionError(
                f"{type(intent).__name__} is not applied by the market process",
                account=getattr(intent, "buyer", getattr(intent, "client", "?")),
                tx=type(intent).__name__,
            )
        raise TypeError(f"not a market intent: {intent!r}")

    def _report(self, intent: ReportUsage) -> str:
        """Meter reported usage; count every actual use, beyond the licence's cap too.

        A report past the licence's remaining uses (or after it expired) meters what
        is still allowed; every actual use not metered and paid for is fraud at the
        version's per-use price, however it arose (under-reporting or use past the cap).
        """
        m, c = self.market, self.counters
        lic = m.state.licenses.get(intent.license_id)
        if lic is None or lic.buyer != intent.buyer:
            raise LicenseError("no such licence of this buyer", account=intent.buyer, tx="report")
        c.reported_uses += intent.reported
        c.actual_uses += intent.actual
        metered = min(intent.reported, self._remaining(lic))
        if metered > 0:
            m.use_license(intent.buyer, intent.license_id, units=metered)
            c.uses_metered += metered
        c.uses_refused += intent.reported - metered
        c.fraud_loss += max(intent.actual - metered, 0) * self.unit_price(lic.version)
        return intent.license_id

    def _remaining(self, lic: License) -> int:
        """Uses still allowed on ``lic`` now (0 once expired)."""
        if lic.expires_at is not None and self._now() >= lic.expires_at:
            return 0
        return lic.max_uses - lic.uses if lic.max_uses is not None else 1 << 62


class RoundSignal:
    """The federation's "round paid, next not yet sampled" moment, as a simpy event.

    A process that waits on :meth:`wait` resumes when the world calls :meth:`fire`
    after a round closes; the world then yields once (a zero delay) so every waiter
    acts before the next round is sampled. With no waiter :meth:`fire` does nothing
    and the world does not yield, so runs without such processes keep their event
    order."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self._event: simpy.Event | None = None

    def wait(self) -> simpy.Event:
        """The event of the next round's close."""
        if self._event is None:
            self._event = self.env.event()
        return self._event

    def fire(self) -> bool:
        """Trigger the waiters, if any; ``True`` when there were some."""
        event, self._event = self._event, None
        if event is None:
            return False
        event.succeed()
        return True


class MarketViewImpl:
    """The read-only :class:`agents.market.MarketView` over a ``Market``.

    Args:
        market: the market to observe.
        clock: the simulated clock (``lambda: env.now``).
        rating_rule: the rating rule whose aggregate buyers see.
        rating_params: that rule's parameters (e.g. ``{"kappa": 0.6}`` for ``yuma``).
        reward_window: rounds over which :meth:`expected_reward` averages.
        rating_refresh_s: how stale (simulated s) a cached rating may get while its votes do
            not change; ``0`` is exact. Only rules that weigh votes by stake or decaying
            reputation need a refresh (``mean`` depends on the votes alone), and those are
            O(votes²) to evaluate, so long runs with many buyers may want e.g. a round length.
        expected_reward_fn: an override for :meth:`expected_reward` (tokens per round).
        expected_cost_fn: the run's cost model for :meth:`expected_cost`, called as
            ``fn(account)`` or ``fn(account, epochs)`` (default: free).
        round_signal: the federation's round-closed signal for :meth:`round_closed`.
    """

    def __init__(
        self,
        market: Market,
        clock: Callable[[], float],
        *,
        rating_rule: str = "mean",
        rating_params: Mapping[str, float] | None = None,
        reward_window: int = 5,
        rating_refresh_s: float = 0.0,
        expected_reward_fn: Callable[[str], float] | None = None,
        expected_cost_fn: Callable[..., float] | None = None,
        round_signal: RoundSignal | None = None,
    ) -> None:
        if reward_window < 1:
            raise ValueError(f"reward_window must be >= 1, got {reward_window}")
        self.market = market
        self.clock = clock
        self.rating_rule = rating_rule
        self.rating_params = dict(rating_params or {})
        self.reward_window = reward_window
        self.rating_refresh_s = rating_refresh_s
        self._ratings: dict[str, tuple[int, float, float | None]] = {}
        self._expected_reward_fn = expected_reward_fn
        self._expected_cost_fn = expected_cost_fn
        self._round_signal = round_signal
        self._round = 0
        self._cursor = 0
        self._slashes: Counter[str] = Counter()
        self._rewards: dict[int, Counter[str]] = {}
        self._contributors: dict[int, set[str]] = {}
        self._versions_key: tuple[int, float] | None = None
        self._versions: list[VersionInfo] = []
        self._license_count = 0
        self._by_buyer: dict[str, list[str]] = {}

    # -- MarketView ------------------------------------------------------------
    def now(self) -> float:
        """The simulated time in seconds."""
        return float(self.clock())

    def versions(self) -> Sequence[VersionInfo]:
        """Every registered version with its accuracy, current rating and price list."""
        key = (self.market.size, self.now())
        if key == self._versions_key:
            return self._versions
        prices = self.market.state.prices
        out = []
        for mv in self.market.versions():
            terms = {
                k: LicenseTerms(t.price, t.duration, t.max_uses)
                for k, t in sorted(prices.get(mv.version, {}).items())
            }
            out.append(
                VersionInfo(
                    version=mv.version,
                    round=mv.round,
                    accuracy=float(mv.metrics.get("accuracy", 0.0)),
                    rating=self._rating(mv.version),
                    prices=terms,
                    contributors=tuple(sorted(mv.contributors)),
                    time=mv.time,
                    shares=dict(sorted(mv.contributors.items())),
                )
            )
        self._versions_key, self._versions = key, out
        return out

    def balance(self, account: str) -> int:
        """Spendable balance in base units."""
        return self.market.balance(account)

    def licenses_of(self, buyer: str) -> Sequence[LicenseInfo]:
        """The buyer's licenses, oldest first."""
        licenses = self.market.state.licenses
        while self._license_count < len(licenses):
            self._license_count += 1
            lic = licenses[f"lic-{self._license_count:06d}"]
            self._by_buyer.setdefault(lic.buyer, []).append(lic.id)
        return [_license_info(licenses[i]) for i in self._by_buyer.get(buyer, [])]

    def slashes(self, account: str) -> int:
        """How many slash entries name ``account``."""
        self._scan()
        return self._slashes[account]

    def expected_cost(self, account: str, epochs: int | None = None) -> float:
        """The run's cost of ``account``'s next round (tokens) at ``epochs`` local epochs
        (``None``: its current ones); 0 without a cost model."""
        fn = self._expected_cost_fn
        if fn is None:
            return 0.0
        return float(fn(account) if epochs is None else fn(account, epochs))

    def round_closed(self) -> simpy.Event:
        """An event that fires when the federation's current round has been paid and
        before the next one is sampled."""
        if self._round_signal is None:
            raise RuntimeError("this market view has no federation to signal round closes")
        return self._round_signal.wait()

    def expected_reward(self, account: str) -> float:
        """Mean reward (tokens) per round over the last ``reward_window`` rounds, licence
        royalties paid in a round included.

        The account's own mean over the rounds in which it contributed; when it did not
        contribute in the window (a newcomer, or one who left), the mean reward per accepted
        contribution, i.e. what joining would have paid.
        """
        if self._expected_reward_fn is not None:
            return float(self._expected_reward_fn(account))
        self._scan()
        rounds = sorted(set(self._rewards) | set(self._contributors))[-self.reward_window :]
        own = [r for r in rounds if account in self._contributors.get(r, set())]
        if own:
            total = sum(self._rewards.get(r, Counter())[account] for r in own)
            return total / len(own) / TOKEN
        paid = sum(sum(self._rewards.get(r, Counter()).values()) for r in rounds)
        slots = sum(len(self._contributors.get(r, set())) for r in rounds)
        return paid / slots / TOKEN if slots else 0.0

    # -- internals -------------------------------------------------------------
    def _rating(self, version: str) -> float | None:
        votes = len(self.market.state.votes.get(version, {}))
        if votes == 0:
            return None
        now = self.now()
        cached = self._ratings.get(version)
        if (
            cached is not None
            and cached[0] == votes
            and (self.rating_rule == "mean" or now - cached[1] < self.rating_refresh_s)
        ):
            return cached[2]
        rating = self.market.rating(version, rule=self.rating_rule, params=self.rating_params)
        self._ratings[version] = (votes, now, rating)
        return rating

    def _scan(self) -> None:
        """Read ledger entries appended since the last scan (slashes, rewards, contributions)."""
        for entry in self.market.entries(self._cursor):
            self._cursor += 1
            data = entry.data
            if entry.kind == "slash":
                self._slashes[str(data["account"])] += 1
            elif entry.kind == "round_started":
                self._round = int(data["round"])  # type: ignore[arg-type]
            elif entry.kind == "revenue_payout" and not data.get("fee"):
                amount = int(data["amount"])  # type: ignore[arg-type]
                self._rewards.setdefault(self._round, Counter())[str(data["to"])] += amount
            elif entry.kind == "reward":
                rnd = int(data["round"])  # type: ignore[arg-type]
                amount = int(data["amount"])  # type: ignore[arg-type]
                self._rewards.setdefault(rnd, Counter())[str(data["to"])] += amount
            elif entry.kind == "contribution":
                rnd = int(data["round"])  # type: ignore[arg-type]
                self._contributors.setdefault(rnd, set()).add(entry.sender)


def _license_info(lic: License) -> LicenseInfo:
    return LicenseInfo(
        lic.id,
        lic.buyer,
        lic.version,
        lic.license_type,
        lic.purchased_at,
        lic.expires_at,
        lic.max_uses,
        lic.uses,
    )


def start_market_processes(
    env: simpy.Environment,
    market: Market,
    behaviours: Mapping[str, MarketBehaviour] | Sequence[MarketBehaviour],
    rng_for: Callable[[str], np.random.Generator],
    *,
    applier: IntentApplier | None = None,
    view: MarketViewImpl | None = None,
    on_event: Callable[[IntentOutcome], None] | None = None,
) -> IntentApplier:
    """Start each behaviour's process on ``env``; returns the applier that applies its intents.

    ``behaviours`` is keyed by a source name (a sequence is keyed by behaviour name, with
    ``#2``, ``#3`` ... for repeats); ``rng_for(key)`` gives each its own generator, so adding a
    behaviour never shifts another's stream. ``on_event`` is used only when no ``applier``
    is given.
    """
    if applier is None:
        applier = IntentApplier(market, on_event=on_event, clock=lambda: float(env.now))
    if view is None:
        view = MarketViewImpl(market, lambda: float(env.now))
    if isinstance(behaviours, Mapping):
        items = list(behaviours.items())
    else:
        items = []
        seen: Counter[str] = Counter()
        for b in behaviours:
            seen[b.name] += 1
            key = b.name if seen[b.name] == 1 else f"{b.name}#{seen[b.name]}"
            items.append((key, b))
    for key, behaviour in items:
        gen: Generator[simpy.Event, Any, None] = behaviour.process(
            env, view, rng_for(key), applier.emitter(key)
        )
        env.process(gen)
        log.info("market process %s: %r", key, behaviour)
    return applier
