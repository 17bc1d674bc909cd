"""Market behaviours: buyers, voters, cabals, whitewashers, license abusers, churn.

A market behaviour is a SimPy process that *observes* the market through a read-only
:class:`MarketView` and *emits intents*; it never writes the ledger. Only the simulation's
``IntentApplier`` (``simulation/world/market_process.py``) turns intents into ledger transactions,
refusing and recording the ones the marketplace rejects (radCAD's policy / state-update split;
docs/ARCHITECTURE.md). Every behaviour takes its randomness from the ``np.random.Generator``
it is handed, so the same seed replays the same intent sequence (SimPy's deterministic event
order does the rest).

Registry ``MARKET_BEHAVIOURS`` (names scenario files use):

* ``buyers``: Poisson arrivals of buyers whose willingness to pay grows with quality and
  rating (a hedonic-price demand model; Rosen 1974), buying the best affordable version,
  renewing subscriptions, and using their licenses at a Poisson rate.
* ``honest_voters``: rate each version by its observed quality plus Gaussian noise.
* ``colluding_cabal``: ballot stuffing and bad-mouthing (Dellarocas 2000, "Immunizing online
  reputation reporting systems against unfair ratings and discriminatory behavior").
* ``whitewashers``: abandon a slashed identity and rejoin under a fresh one (Feldman et al.
  2006, "Free-riding and whitewashing in peer-to-peer systems").
* ``license_abusers``: key sharing and under-reported metered usage (license-fraud threats of
  model marketplaces, e.g. Weng et al. 2022, "Golden Grail").
* ``rational_participants``: take part, and choose how many local epochs to train, by the
  expected net profit of a round under the mechanism: what it pays them less the run's cost
  of computation plus the privacy spent (the individual-rationality constraint of FL
  incentive mechanisms; Zhan et al. 2021, "A survey on incentive mechanisms for federated
  learning"). The default participants of incentive studies (docs/incentives.md).
* ``churn``: exponential on/off sessions plus straggler and dropout rates the FL loop reads
  for its round deadlines (Bonawitz et al. 2019; Li et al. 2020, FedProx).
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
from pydantic import Field, PrivateAttr, model_validator

from agents._params import BaseParams, validate_params
from agents._registry import Registry
from agents.intents import (
    BuyLicense,
    Intent,
    Join,
    Leave,
    LicenseType,
    Register,
    SetEffort,
    UseLicense,
    Vote,
)

__all__ = [
    "BASE_UNITS_PER_TOKEN",
    "MARKET_BEHAVIOURS",
    "Availability",
    "BuyersBehaviour",
    "ChurnBehaviour",
    "ColludingCabalBehaviour",
    "Decision",
    "EffortParams",
    "Emit",
    "HonestVotersBehaviour",
    "LicenseAbusersBehaviour",
    "LicenseInfo",
    "LicenseTerms",
    "MarketBehaviour",
    "MarketIntent",
    "MarketView",
    "ProcessGenerator",
    "RationalParticipantsBehaviour",
    "ReportUsage",
    "SimEnvironment",
    "UseLicenseKey",
    "VersionInfo",
    "WhitewashersBehaviour",
    "attacking_market_behaviours",
    "base_identity",
    "create_market_behaviour",
    "decide",
    "fresh_identity",
]

logger = logging.getLogger("fedmarket.agents")

BASE_UNITS_PER_TOKEN = 1_000_000
"""Base units per token; mirrors ``marketplace.TOKEN`` (agents may not import marketplace)."""

_HOUR = 3600.0


# -- the clock a behaviour runs on --------------------------------------------------------


class SimEnvironment(Protocol):
    """The part of ``simpy.Environment`` a behaviour uses.

    A structural type, so ``agents`` stays free of a simpy import (numpy, pydantic and the
    standard library only); any ``simpy.Environment`` satisfies it.
    """

    @property
    def now(self) -> float:
        """The simulated time (s)."""
        ...

    def timeout(self, delay: float = 0, value: Any | None = None) -> Any:
        """An event that fires ``delay`` seconds from now."""
        ...

    def process(self, generator: Generator[Any, Any, Any]) -> Any:
        """Start ``generator`` as a concurrent process."""
        ...


ProcessGenerator = Generator[Any, Any, None]
"""A simpy process: a generator that yields events (``env.timeout(dt)``, ...)."""


# -- intents of the market behaviours ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UseLicenseKey:
    """``user`` uses the license ``license_id`` directly (by its key).

    Emitted by key sharers: when ``user`` is not the license's buyer the marketplace refuses
    the use and the simulation records the refusal.
    """

    user: str
    license_id: str
    uses: int = 1

    def __post_init__(self) -> None:
        if not self.user or not self.license_id:
            raise ValueError("user and license_id must be non-empty strings")
        if isinstance(self.uses, bool) or not isinstance(self.uses, int) or self.uses < 1:
            raise ValueError(f"uses must be an int >= 1, got {self.uses!r}")


@dataclass(frozen=True, slots=True)
class ReportUsage:
    """A buyer reports ``reported`` uses of ``license_id`` while it really made ``actual``.

    The marketplace meters only ``reported``; the simulation keeps ``actual`` as ground truth
    so the tokens lost to under-reporting, ``(actual - reported) x unit price``, are known.
    """

    buyer: str
    license_id: str
    reported: int
    actual: int

    def __post_init__(self) -> None:
        if not self.buyer or not self.license_id:
            raise ValueError("buyer and license_id must be non-empty strings")
        for name in ("reported", "actual"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.reported > self.actual:
            raise ValueError(f"reported ({self.reported}) exceeds actual ({self.actual})")


MarketIntent = Intent | UseLicenseKey | ReportUsage
"""Any intent a market behaviour may emit."""

Emit = Callable[[MarketIntent], None]
"""How a behaviour hands an intent to the simulation (applied before ``emit`` returns)."""


def fresh_identity(account: str, n: int) -> str:
    """The ``n``-th fresh identity of ``account`` (``client-003`` -> ``client-003.2``).

    ``.`` is used (not ``~``) because ledger account ids are ``[A-Za-z0-9_.:-]``.
    """
    return f"{base_identity(account)}.{n}"


def base_identity(account: str) -> str:
    """The original identity behind a whitewashed one (``client-003.2`` -> ``client-003``)."""
    return account.split(".", 1)[0]


# -- what behaviours may observe -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LicenseTerms:
    """One license type's terms: price in base units, duration (s) and usage cap."""

    price: int
    duration: float | None = None
    max_uses: int | None = None


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What a participant can see of a registered model version.

    Attributes:
        version: the registry id (``v0001``).
        round: the federated round that produced it.
        accuracy: the registry's validation accuracy in [0, 1].
        rating: the current aggregated rating (0-5), ``None`` without votes.
        prices: license type -> terms (empty when the version is not for sale).
        contributors: accounts with a revenue share in the version.
        time: simulated registration time (s).
        shares: each contributor's recorded share (empty: equal shares).
    """

    version: str
    round: int
    accuracy: float
    rating: float | None
    prices: Mapping[str, LicenseTerms]
    contributors: tuple[str, ...]
    time: float
    shares: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LicenseInfo:
    """A snapshot of a purchased license."""

    id: str
    buyer: str
    version: str
    license_type: str
    purchased_at: float
    expires_at: float | None
    max_uses: int | None
    uses: int

    def usable(self, now: float, units: int = 1) -> bool:
        """Whether ``units`` more uses at ``now`` would be accepted (ignoring the holder)."""
        if self.expires_at is not None and now >= self.expires_at:
            return False
        return self.max_uses is None or self.uses + units <= self.max_uses


@runtime_checkable
class MarketView(Protocol):
    """Read-only market state as participants see it (no ground truth, no writes)."""

    def now(self) -> float:
        """The simulated time in seconds."""
        ...

    def versions(self) -> Sequence[VersionInfo]:
        """Every registered model version, oldest first."""
        ...

    def balance(self, account: str) -> int:
        """Spendable balance in base units (0 for an unknown account)."""
        ...

    def expected_reward(self, account: str) -> float:
        """Expected reward per round of ``account`` in tokens (emission and royalties),
        from recent rounds."""
        ...

    def expected_cost(self, account: str, epochs: int | None = None) -> float:
        """What ``account``'s next round would cost it in tokens, by the run's own cost
        model (compute, and the ε it would spend at the market's price per ε), training
        ``epochs`` local epochs (``None``: the epochs it trains now)."""
        ...

    def licenses_of(self, buyer: str) -> Sequence[LicenseInfo]:
        """Licenses bought by ``buyer``, oldest first."""
        ...

    def round_closed(self) -> Any:
        """A simpy event that fires when the federation's current round has been paid
        and before the next one is sampled (to decide on the next round)."""
        ...

    def slashes(self, account: str) -> int:
        """How many times ``account``'s stake has been slashed."""
        ...


# -- the ABC and the registry --------------------------------------------------------------


class MarketBehaviour(ABC):
    """A market participant population as one simpy process.

    Subclasses set ``name`` (the registry key) and ``Params`` (a pydantic model with
    ``extra="forbid"``) and implement :meth:`process`, a generator that yields simpy events
    and calls ``emit`` with intents. Behaviours never write the ledger.
    """

    name: ClassVar[str]
    #: Ground truth: does this behaviour attack the market? (The no-attack baseline
    #: drops it, and its members count as market attackers.)
    attacks: ClassVar[bool] = False
    Params: ClassVar[type[BaseParams]]

    def __init__(self, params: BaseParams | Mapping[str, object] | None = None) -> None:
        if not hasattr(type(self), "Params"):
            raise TypeError(f"{type(self).__name__} must set the class attribute Params")
        self.params: BaseParams = validate_params(
            self.Params, params, what=f"market behaviour {getattr(self, 'name', '?')!r}"
        )

    @abstractmethod
    def process(
        self,
        env: SimEnvironment,
        view: MarketView,
        rng: np.random.Generator,
        emit: Emit,
    ) -> ProcessGenerator:
        """The behaviour's simpy process; it runs until the environment stops."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


class _Members(BaseParams):
    """Who the behaviour acts for: explicit ``accounts``, ``count`` ids ``{prefix}{i:03d}``,
    or the identities of a population ``group``.

    A group's members are a seeded draw, known only when the run starts, so a behaviour
    naming one is bound to them with :meth:`for_groups` before it runs (the world does
    this); until then :meth:`members` refuses rather than guess.
    """

    accounts: tuple[str, ...] = ()
    count: int = Field(default=0, ge=0)
    prefix: str = "client-"
    group: str | None = Field(
        None, min_length=1, description="a population group whose identities are the members"
    )
    _bound: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _one_source(self) -> _Members:
        if sum((bool(self.accounts), bool(self.count), self.group is not None)) > 1:
            raise ValueError("give one of accounts, count or group")
        if len(set(self.accounts)) != len(self.accounts):
            raise ValueError("accounts must be distinct")
        return self

    def members(self) -> tuple[str, ...]:
        """The member account ids."""
        if self.group is not None and not self._bound:
            raise ValueError(f"the members of group {self.group!r} are known only at run start")
        if self.accounts or self.group is not None:
            return self.accounts
        return tuple(f"{self.prefix}{i:03d}" for i in range(self.count))

    def for_groups(self, groups: Mapping[str, Sequence[str]]) -> Self:
        """These parameters with a named ``group`` bound to its identities in ``groups``
        (population group → identities); unchanged when no group is named."""
        if self.group is None:
            return self
        if self.group not in groups:
            known = ", ".join(sorted(groups)) or "none"
            raise ValueError(f"group: no population group {self.group!r} (groups: {known})")
        bound = self.model_copy(update={"accounts": tuple(groups[self.group])})
        bound._bound = True
        return bound


def _exp(rng: np.random.Generator, mean: float) -> float:
    return float(rng.exponential(mean))


# -- buyers --------------------------------------------------------------------------------


def _by_type(perpetual: float, subscription: float, per_use: float) -> dict[LicenseType, float]:
    return {"perpetual": perpetual, "subscription": subscription, "per_use": per_use}


class BuyersParams(BaseParams):
    """Parameters of :class:`BuyersBehaviour` (token amounts in tokens, times in hours)."""

    rate_per_hour: float = Field(default=1.0, gt=0)
    prefix: str = "buyer-"
    max_buyers: int | None = Field(default=None, ge=1)
    base_value: dict[LicenseType, float] = Field(default_factory=lambda: _by_type(50.0, 10.0, 5.0))
    accuracy_exponent: float = Field(default=2.0, ge=0)
    rating_exponent: float = Field(default=1.0, ge=0)
    prior_rating: float = Field(default=3.0, gt=0, le=5)
    license_mix: dict[LicenseType, float] = Field(default_factory=lambda: _by_type(0.2, 0.5, 0.3))
    renew_prob: float = Field(default=0.5, ge=0, le=1)
    use_rate_per_hour: float = Field(default=2.0, ge=0)
    mean_session_hours: float = Field(default=24.0, gt=0)

    @model_validator(mode="after")
    def _check_mix(self) -> BuyersParams:
        if not self.license_mix or sum(self.license_mix.values()) <= 0:
            raise ValueError("license_mix needs a positive weight")
        if any(w < 0 for w in self.license_mix.values()):
            raise ValueError("license_mix weights must be >= 0")
        missing = sorted(set(self.license_mix) - set(self.base_value))
        if missing:
            raise ValueError(f"base_value lacks license types {missing}")
        return self


class BuyersBehaviour(MarketBehaviour):
    """Poisson arrivals of buyers (rate per simulated hour) with quality-driven demand.

    A buyer draws a license type from ``license_mix`` and values version ``v`` at
    ``base_value[type] * accuracy(v) ** a * (rating(v) / 5) ** b`` tokens (a hedonic price in
    quality attributes; Rosen 1974), with ``prior_rating`` standing in while a version has no
    votes. It buys the version of highest value whose price does not exceed it, uses the
    license as a Poisson process (``use_rate_per_hour``) for an exponential session, and when
    a license expires or is used up renews (re-choosing the best version) with probability
    ``renew_prob``.
    """

    name = "buyers"
    Params = BuyersParams
    params: BuyersParams

    def value(self, version: VersionInfo, license_type: str) -> float:
        """Willingness to pay for ``license_type`` on ``version``, in tokens."""
        return self.worth(license_type, version.accuracy, version.rating)

    def worth(self, license_type: str, accuracy: float, rating: float | None = None) -> float:
        """Willingness to pay for ``license_type`` on a version of this accuracy and
        rating (``prior_rating`` when unrated), in tokens; at most ``base_value[type]``
        (accuracy 1, rating 5), which is what the scenario check of ``market.prices``
        and the default (demand) prices use."""
        p = self.params
        rating = p.prior_rating if rating is None else rating
        base = p.base_value.get(license_type, 0.0)  # type: ignore[call-overload]
        acc = min(max(accuracy, 0.0), 1.0)
        return float(base * acc**p.accuracy_exponent * (rating / 5.0) ** p.rating_exponent)

    def choose(self, versions: Sequence[VersionInfo], license_type: str) -> str | None:
        """The best version (highest value, latest on ties) affordable at its listed price."""
        best: tuple[float, int] | None = None
        choice: str | None = None
        for i, v in enumerate(versions):
            terms = v.prices.get(license_type)
            if terms is None:
                continue
            worth = self.value(v, license_type)
            if terms.price > worth * BASE_UNITS_PER_TOKEN:
                continue
            key = (worth, i)
            if best is None or key > best:
                best, choice = key, v.version
        return choice

    def process(
        self,
        env: SimEnvironment,
        view: MarketView,
        rng: np.random.Generator,
        emit: Emit,
    ) -> ProcessGenerator:
        p = self.params
        types = sorted(p.license_mix)
        weights = np.array([p.license_mix[t] for t in types], dtype=float)
        weights /= weights.sum()
        n = 0
        while p.max_buyers is None or n < p.max_buyers:
            yield env.timeout(_exp(rng, _HOUR / p.rate_per_hour))
            buyer = f"{p.prefix}{n:03d}"
            n += 1
            license_type = types[int(rng.choice(len(types), p=weights))]
            session_end = float(env.now) + _exp(rng, p.mean_session_hours * _HOUR)
            child = rng.spawn(1)[0]  # usage draws never shift the arrival stream
            env.process(self._buyer(env, view, child, emit, buyer, license_type, session_end))

    def _buy(self, view: MarketView, emit: Emit, buyer: str, license_type: str) -> str | None:
        version = self.choose(view.versions(), license_type)
        if version is None:
            logger.debug("%s finds no %s license worth its price", buyer, license_type)
            return None
        before = len(view.licenses_of(buyer))
        emit(BuyLicense(buyer, version, license_type))  # type: ignore[arg-type]
        bought = view.licenses_of(buyer)
        return bought[-1].id if len(bought) > before else None

    def _buyer(
        self,
        env: SimEnvironment,
        view: MarketView,
        rng: np.random.Generator,
        emit: Emit,
        buyer: str,
        license_type: str,
        session_end: float,
    ) -> ProcessGenerator:
        p = self.params
        lic_id = self._buy(view, emit, buyer, license_type)
        while lic_id is not None:
            lic = next(x for x in view.licenses_of(buyer) if x.id == lic_id)
            gap = _exp(rng, _HOUR / p.use_rate_per_hour) if p.use_rate_per_hour > 0 else math.inf
            t_next = float(env.now) + gap
            lapse = lic.expires_at if lic.expires_at is not None else math.inf
            if lic.max_uses is not None and lic.uses >= lic.max_uses:
                lapse = float(env.now)
            if min(t_next, lapse) >= session_end:
                return
            if lapse <= t_next:
                if lapse > env.now:
                    yield env.timeout(lapse - float(env.now))
                if rng.random() >= p.renew_prob:
                    return
                lic_id = self._buy(view, emit, buyer, license_type)
                continue
            yield env.timeout(gap)
            emit(UseLicense(buyer, lic.version, 1))


# -- voters --------------------------------------------------------------------------------


class _VoterParams(_Members):
    check_interval_s: float = Field(default=600.0, gt=0)


class HonestVotersParams(_VoterParams):
    """Parameters of :class:`HonestVotersBehaviour`."""

    prefix: str = "voter-"
    noise_sd: float = Field(default=0.5, ge=0)
    vote_prob: float = Field(default=1.0, ge=0, le=1)


class HonestVotersBehaviour(MarketBehaviour):
    """Voters who rate each new version ``clip(5 * accuracy + N(0, noise_sd), 0, 5)``.

    The honest baseline against which unfair-rating attacks are measured (Dellarocas 2000):
    every voter sees the registry's validation accuracy and reports it with private noise.
    New versions are polled every ``check_interval_s``.
    """

    name = "honest_voters"
    Params = HonestVotersParams
    params: HonestVotersParams

    def process(
        self,
        env: SimEnvironment,
        view: MarketView,
        rng: np.random.Generator,
        emit: Emit,
    ) -> ProcessGenerator:
        p = self.params
        voters = p.members()
        for voter in voters:
            emit(Register(voter, "voter"))
        seen: set[str] = set()
        while True:
            for v in view.versions():
                if v.version in seen:
                    continue
                seen.add(v.version)
                for voter in voters:
                    if rng.random() >= p.vote_prob:
                        continue
                    score = 5.0 * v.accuracy + float(rng.normal(0.0, p.noise_sd))
                    emit(Vote(voter, v.version, float(np.clip(score, 0.0, 5.0))))
            yield env.timeout(p.check_interval_s)


class ColludingCabalParams(_VoterParams):
    """Parameters of :class:`ColludingCabalBehaviour`.

    ``own_share``: a version is the cabal's own when its members together hold at least
    this share of its recorded contributions (they are paid royalties by it); every other
    version is a competitor's.
    """

    own_share: float = Field(default=0.5, gt=0, le=1)
    stuff: bool = True
    bad_mouth: bool = True
    high: float = Field(default=5.0, ge=0, le=5)
    low: float = Field(default=0.0, ge=0, le=5)


class ColludingCabalBehaviour(MarketBehaviour):
    """A cabal that ballot-stuffs its own versions and bad-mouths everyone else's.

    "Own" versions are those in which the members together hold at least ``own_share`` of
    the contributions; every member rates them ``high`` and all other versions ``low`` (the
    unfair-rating attacks of Dellarocas 2000). Robust rating rules (median, stake- or
    reputation-weighted) are measured against it.
    """

    name = "colluding_cabal"
    attacks = True
    Params = ColludingCabalParams
    params: ColludingCabalParams

    def is_own(self, contributors: Mapping[str, float], cabal: set[str]) -> bool:
        """Do the members hold at least ``own_share`` of ``contributors``' shares?"""
        total = sum(contributors.values())
        held = sum(share for account, share in contributors.items() if account in cabal)
        return total > 0 and held / total >= self.params.own_share - 1e-12

    def process(
        self,
        env: SimEnvironment,
        view: MarketView,
        rng: np.random.Generator,
        emit: Emit,
    ) -> ProcessGenerator:
        p = self.params
        members = p.members()
        for member in members:
            emit(Register(member, "voter"))
        cabal = set(members)
        seen: set[str] = set()
        while True:
            for v in view.versions():
                if v.version in seen:
                    continue
                seen.add(v.version)
                shares = v.shares or dict.fromkeys(v.contributors, 1.0)
                own = self.is_own(shares, cabal)
                if own and p.stuff:
                    score = p.high
                elif not own and p.bad_mouth:
                    score = p.low
                else:
                    continue
                for member in members:
                    emit(Vote(member, v.version, score))
            yield env.timeout(p.check_interval_s)


# -- whitewashers --------------------------------------------------------------------------


class WhitewashersParams(_Members):
    """Parameters of :class:`WhitewashersBehaviour`."""

    role: str = "data_owner"
    check_interval_s: float = Field(default=600.0, gt=0)
    max_rejoins: int | None = Field(default=None, ge=0)


class WhitewashersBehaviour(MarketBehaviour):
    """Participants who shed a slashed identity and rejoin under a fresh one.

    After each poll (``check_interval_s``) an identity with a recorded slash leaves
    (``Leave``) and its owner joins again as :func:`fresh_identity` ``(account, n)``
    (``Join``), escaping its bad reputation; Feldman et al. 2006 show such cheap pseudonyms
    defeat reputation unless newcomers pay an entry cost (stake, probation).
    """

    name = "whitewashers"
    attacks = True
    Params = WhitewashersParams
    params: WhitewashersParams

    def process(
        self,
        env: SimEnvironment,
        view: MarketView,
        rng: np.random.Generator,
        emit: Emit,
    ) -> ProcessGenerator:
        p = self.params
        current = {acct: acct for acct in p.members()}
        rejoins = dict.fromkeys(current, 0)
        while True:
            yield env.timeout(p.check_interval_s)
            for original in sorted(current):
                identity = current[original]
                if view.slashes(identity) == 0:
                    continue
                if p.max_rejoins is not None and rejoins[original] >= p.max_rejoins:
                    continue
                rejoins[original] += 1
                new = fresh_identity(original, rejoins[original])
                logger.debug("whitewasher %s sheds %s for %s", original, identity, new)
                emit(Leave(identity))
                emit(Join(new, p.role))
                current[original] = new


# -- license abusers -----------------------------------------------------------------------


class LicenseAbusersParams(_Members):
    """Parameters of :class:`LicenseAbusersBehaviour` (rates per simulated hour)."""

    prefix: str = "abuser-"
    license_type: LicenseType = "per_use"
    sharers: int = Field(default=2, ge=0)
    shared_use_rate_per_hour: float = Field(default=1.0, ge=0)
    true_use_rate_per_hour: float = Field(default=10.0, ge=0)
    report_fraction: float = Field(default=0.5, ge=0, le=1)
    report_interval_s: float = Field(default=3600.0, gt=0)
    check_interval_s: float = Field(default=600.0, gt=0)


class LicenseAbusersBehaviour(MarketBehaviour):
    """Buyers who share their license key and under-report metered usage.

    Each abuser buys one ``license_type`` license on the newest version that offers it, then

    * lets ``sharers`` other identities (``{abuser}.share{j}``) use it by key at
      ``shared_use_rate_per_hour`` each (``UseLicenseKey``; the marketplace must refuse:
      the license names its buyer), and
    * every ``report_interval_s`` makes ``Poisson(true_use_rate · interval)`` real uses but
      reports only ``floor(report_fraction · actual)`` (``ReportUsage``).

    Both are the license-fraud threats of model marketplaces (unauthorised redistribution and
    usage misreporting; Weng et al. 2022).
    """

    name = "license_abusers"
    attacks = True
    Params = LicenseAbusersParams
    params: LicenseAbusersParams

    def process(
        self,
        env: SimEnvironment,
        view: MarketView,
        rng: np.random.Generator,
        emit: Emit,
    ) -> ProcessGenerator:
        p = self.params
        for abuser in p.members():
            env.process(self._abuser(env, view, rng.spawn(1)[0], emit, abuser))
        yield env.timeout(0)

    def _abuser(
        self,
        env: SimEnvironment,
        view: MarketView,
        rng: np.random.Generator,
        emit: Emit,
        abuser: str,
    ) -> ProcessGenerator:
        p = self.params
        lic: LicenseInfo | None = None
        while lic is None:
            offering = [v for v in view.versions() if p.license_type in v.prices]
            if offering:
                emit(BuyLicense(abuser, offering[-1].version, p.license_type))
                held = view.licenses_of(abuser)
                lic = held[-1] if held else None
            if lic is None:
                yield env.timeout(p.check_interval_s)
        if p.shared_use_rate_per_hour > 0:
            for j in range(p.sharers):
                user = f"{abuser}.share{j}"
                env.process(self._sharer(env, rng.spawn(1)[0], emit, user, lic.id))
        if p.true_use_rate_per_hour > 0:
            while True:
                yield env.timeout(p.report_interval_s)
                actual = int(rng.poisson(p.true_use_rate_per_hour * p.report_interval_s / _HOUR))
                reported = math.floor(p.report_fraction * actual)
                emit(ReportUsage(abuser, lic.id, reported, actual))

    def _sharer(
        self,
        env: SimEnvironment,
        rng: np.random.Generator,
        emit: Emit,
        user: str,
        license_id: str,
    ) -> ProcessGenerator:
        mean = _HOUR / self.params.shared_use_rate_per_hour
        while True:
            yield env.timeout(_exp(rng, mean))
            emit(UseLicenseKey(user, license_id, 1))


# -- rational participants -----------------------------------------------------------------


class EffortParams(BaseParams):
    """The ``effort`` knob of :class:`RationalParticipantsBehaviour`: local epochs.

    A member trains ``min_epochs`` … ``max_epochs`` local epochs and starts at
    ``max_epochs``. It believes its reward at effort ``e`` is ``r̂ · (e / e₀)^α``, where
    ``r̂`` is what the mechanism paid it at its current effort ``e₀`` and ``α`` is
    ``reward_elasticity``: 0 for a mechanism that pays regardless of work done (``equal``,
    ``data_size``), larger where better updates earn more (``score``).
    """

    min_epochs: int = Field(default=1, ge=1)
    max_epochs: int = Field(default=1, ge=1)
    reward_elasticity: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_epochs < self.min_epochs:
            raise ValueError(
                f"max_epochs ({self.max_epochs}) must be >= min_epochs ({self.min_epochs})"
            )
        return self


class RationalParticipantsParams(_Members):
    """Parameters of :class:`RationalParticipantsBehaviour`.

    Costs are the run's (``market.compute_cost_per_round``, ``market.compute_cost_per_example``
    per row and epoch trained, ``market.price_per_epsilon``), read through
    ``MarketView.expected_cost``: a participant decides from the economy the run reports
    (the ``cost`` rows net profit subtracts), not a private one. Without ``effort`` members
    train the scenario's ``training.epochs``.
    """

    round_interval_s: float | None = Field(
        default=None,
        gt=0,
        description="decide every this many simulated seconds; unset: after every round",
    )
    rejoin_margin: float = Field(default=0.1, ge=0)
    role: str = "data_owner"
    effort: EffortParams | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A rational member's choice for its next round.

    Attributes:
        take_part: whether it takes part.
        epochs: the local epochs it chose (``None``: no effort knob, the scenario's).
        reward: its expected reward at that effort (tokens).
        cost: the run's cost of its next round at that effort (tokens).
    """

    take_part: bool
    epochs: int | None
    reward: float
    cost: float

    @property
    def profit(self) -> float:
        """Expected net profit of the round: reward − cost."""
        return self.reward - self.cost


def decide(
    reward: float,
    cost: Callable[[int | None], float],
    *,
    present: bool,
    rejoin_margin: float,
    effort: EffortParams | None = None,
    current: int | None = None,
) -> Decision:
    """The individually rational choice of effort and participation.

    Picks the effort ``e`` maximising ``r(e) − c(e)``, with ``r(e) = reward · (e /
    current)^α`` (``reward`` was earned at ``current`` epochs) and ``c(e) = cost(e)`` the
    run's cost model; ties go to the smaller effort. A present member takes part while
    ``r(e) ≥ c(e)``; an absent one rejoins once ``r(e) ≥ c(e) · (1 + rejoin_margin)`` (a
    hysteresis band, so members do not flap every round).
    """
    if effort is None:
        options: list[tuple[int | None, float]] = [(None, reward)]
    else:
        base = current if current is not None else effort.max_epochs
        a = effort.reward_elasticity
        options = [
            (e, reward * (e / base) ** a) for e in range(effort.min_epochs, effort.max_epochs + 1)
        ]
    best: Decision | None = None
    for e, r in options:
        d = Decision(True, e, r, cost(e))
        if best is None or d.profit > best.profit:
            best = d
    assert best is not None
    bar = best.cost if present else best.cost * (1.0 + rejoin_margin)
    return Decision(best.reward >= bar, best.epochs, best.reward, best.cost)


class RationalParticipantsBehaviour(MarketBehaviour):
    """Participants who stay only while participation is individually rational.

    After every federated round (once it is paid, before the next is sampled; or every
    ``round_interval_s`` when set) each member takes :func:`decide`'s choice from
    ``view.expected_reward`` (what the mechanism paid it per round lately, emission and
    royalties; what it pays a contributor when the member has not contributed) and
    ``view.expected_cost`` (the run's cost of its next round at each effort: compute, and
    the ε it would spend priced per unit ε, as in DP-aware incentive designs; Zhan et al.
    2021). It leaves (``Leave``), rejoins (``Join``) and sets its local epochs
    (``SetEffort``, with an ``effort`` knob) accordingly; the world applies the intents.
    """

    name = "rational_participants"
    Params = RationalParticipantsParams
    params: RationalParticipantsParams

    def process(
        self,
        env: SimEnvironment,
        view: MarketView,
        rng: np.random.Generator,
        emit: Emit,
    ) -> ProcessGenerator:
        p = self.params
        present = dict.fromkeys(p.members(), True)
        epochs: dict[str, int | None] = dict.fromkeys(present, None)
        if p.effort is not None:
            for acct in sorted(present):
                emit(SetEffort(acct, p.effort.max_epochs))
                epochs[acct] = p.effort.max_epochs
        while True:
            if p.round_interval_s is None:
                yield view.round_closed()
            else:
                yield env.timeout(p.round_interval_s)
            for acct in sorted(present):
                d = decide(
                    view.expected_reward(acct),
                    partial(view.expected_cost, acct),
                    present=present[acct],
                    rejoin_margin=p.rejoin_margin,
                    effort=p.effort,
                    current=epochs[acct],
                )
                if present[acct] and not d.take_part:
                    logger.debug("%s leaves: reward %.4f < cost %.4f", acct, d.reward, d.cost)
                    emit(Leave(acct))
                    present[acct] = False
                elif not present[acct] and d.take_part:
                    emit(Join(acct, p.role))
                    present[acct] = True
                if d.take_part and d.epochs is not None and d.epochs != epochs[acct]:
                    emit(SetEffort(acct, d.epochs))
                    epochs[acct] = d.epochs


# -- churn, stragglers and dropouts --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Availability:
    """Per-round system heterogeneity the FL loop applies to an online client.

    Attributes:
        straggler_prob: probability a client is slow this round.
        straggler_slowdown: factor on a straggler's training time (it may miss the deadline).
        dropout_prob: probability a client does not reply this round.
    """

    straggler_prob: float = 0.0
    straggler_slowdown: float = 1.0
    dropout_prob: float = 0.0

    def sample(self, rng: np.random.Generator) -> tuple[bool, float]:
        """``(dropped, slowdown)`` for one client in one round (two draws, always)."""
        dropped = bool(rng.random() < self.dropout_prob)
        slow = bool(rng.random() < self.straggler_prob)
        return dropped, (self.straggler_slowdown if slow else 1.0)


class ChurnParams(_Members):
    """Parameters of :class:`ChurnBehaviour` (session lengths in simulated hours)."""

    mean_online_hours: float = Field(default=8.0, gt=0)
    mean_offline_hours: float = Field(default=2.0, gt=0)
    start_online: bool = True
    role: str = "data_owner"
    straggler_prob: float = Field(default=0.0, ge=0, le=1)
    straggler_slowdown: float = Field(default=3.0, ge=1)
    dropout_prob: float = Field(default=0.0, ge=0, le=1)


class ChurnBehaviour(MarketBehaviour):
    """Members alternate exponential online and offline sessions (``Leave`` / ``Join``).

    Session lengths follow the exponential on/off model of P2P and cross-device FL churn
    (Bonawitz et al. 2019). :attr:`availability` exposes straggler and dropout rates as data:
    the FL loop, not this process, applies them to round deadlines (Li et al. 2020).
    """

    name = "churn"
    Params = ChurnParams
    params: ChurnParams

    @property
    def availability(self) -> Availability:
        """Straggler and dropout rates for the FL loop's round deadlines."""
        p = self.params
        return Availability(p.straggler_prob, p.straggler_slowdown, p.dropout_prob)

    def process(
        self,
        env: SimEnvironment,
        view: MarketView,
        rng: np.random.Generator,
        emit: Emit,
    ) -> ProcessGenerator:
        for acct in self.params.members():
            env.process(self._member(env, rng.spawn(1)[0], emit, acct))
        yield env.timeout(0)

    def _member(
        self, env: SimEnvironment, rng: np.random.Generator, emit: Emit, acct: str
    ) -> ProcessGenerator:
        p = self.params
        online = p.start_online
        while True:
            mean = p.mean_online_hours if online else p.mean_offline_hours
            yield env.timeout(_exp(rng, mean * _HOUR))
            emit(Leave(acct) if online else Join(acct, p.role))
            online = not online


# -- registry ------------------------------------------------------------------------------

MARKET_BEHAVIOURS: Registry[type[MarketBehaviour]] = Registry("market behaviour")
for _cls in (
    BuyersBehaviour,
    HonestVotersBehaviour,
    ColludingCabalBehaviour,
    WhitewashersBehaviour,
    LicenseAbusersBehaviour,
    RationalParticipantsBehaviour,
    ChurnBehaviour,
):
    MARKET_BEHAVIOURS.register(_cls.name, _cls)
del _cls


def attacking_market_behaviours() -> tuple[str, ...]:
    """Names of the market behaviours that attack (cabals, whitewashers, licence abusers)."""
    return tuple(n for n in MARKET_BEHAVIOURS.names() if MARKET_BEHAVIOURS[n].attacks)


def create_market_behaviour(
    name: str,
    params: Mapping[str, object] | BaseParams | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> MarketBehaviour:
    """Build the market behaviour registered as ``name`` from JSON-able ``params``.

    ``groups`` (population group → its identities) binds a ``group`` the params name
    to its members; without it such a behaviour is built, but cannot list them.

    Raises:
        ValueError: unknown ``name`` (the message lists valid names), invalid ``params``
            (the message names the offending field), or a ``group`` not in ``groups``.
    """
    cls = MARKET_BEHAVIOURS.get_or_raise(name)
    validated = validate_params(cls.Params, params, what=f"market behaviour {name!r}")
    if groups is not None and isinstance(validated, _Members):
        validated = validated.for_groups(groups)
    return cls(validated)
