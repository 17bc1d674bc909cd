"""Deterministic application of transactions: balances, stakes, licenses, votes.

:class:`MarketState` is the single state machine used both live (by
:class:`marketplace.Market` before an entry is appended) and by the from-scratch
audit, which replays every entry and so *re-derives* balances instead of
trusting any stored number. Every handler validates first and mutates only
once nothing can fail, so a refused transaction leaves the state untouched.

Invariants (checked by the Hypothesis stateful test): no balance or stake is
ever negative; ``supply == minted - burned`` equals the sum of all balances,
stakes and unbonding amounts; every token's movement is an entry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from marketplace.canonical import JSON
from marketplace.entries import Transaction
from marketplace.errors import (
    AuthorizationError,
    DuplicateAccountError,
    EmissionError,
    InsufficientFunds,
    LedgerIdError,
    LicenseError,
    NonceError,
    RegistryError,
    StakeError,
    TransactionError,
    UnknownAccountError,
    VoteError,
)

__all__ = [
    "RESERVED_KINDS",
    "TREASURY",
    "Account",
    "Contribution",
    "License",
    "MarketState",
    "ModelVersion",
    "Params",
    "PriceTerms",
    "Vote",
    "pool_account",
]

TREASURY = "treasury"
_EVENT_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_PUBLIC_KEY = re.compile(r"^[0-9a-f]{64}$")
_KEYED_KINDS = ("genesis", "register")
"""The kinds that open an account, and so carry its public key (its first entry)."""


def pool_account(version: str) -> str:
    """The revenue-pool pseudo-account of a model version (holds license revenue)."""
    return f"pool:{version}"


@dataclass(frozen=True, slots=True)
class Params:
    """Market parameters, fixed at genesis (``genesis["params"]`` overrides defaults)."""

    unstake_delay: float = 3600.0
    """Simulated seconds between ``unstake`` and the earliest ``withdraw``."""
    min_stake: int = 0
    """Stake a contributor must have locked to record a contribution."""
    platform_fee_bps: int = 500
    """Platform fee on license revenue, in basis points (500 = 5 %)."""
    vote_min_stake: int = 0
    """Stake a voter must have locked to vote."""
    vote_min_reputation: float = 0.0
    """Reputation a voter must have to vote."""
    vote_earn_min_stake: int = 0
    """Stake a voter must have locked for its votes to earn reputation."""
    max_supply: int | None = None
    """Cap on minted - burned; ``None`` means uncapped."""
    emission_per_round: int | None = None
    """Reward emission of round 0; ``None`` means rewards are capped by max_supply only."""
    halving_rounds: int | None = None
    """Emission halves every this many rounds (Bitcoin-style); ``None`` keeps it flat."""
    reputation_half_life: float = 86400.0
    """Simulated seconds for a reputation contribution to decay by half."""

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Params:
        """Build from a mapping; an unknown name raises ValueError listing the valid ones."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(
                f"unknown market params {unknown}; valid names: {', '.join(sorted(names))}"
            )
        return replace(cls(), **dict(raw))

    def to_json(self) -> dict[str, JSON]:
        """The params as a JSON mapping (stored in the genesis entry)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def emission(self, round: int) -> int | None:
        """Reward emission allowed in ``round`` under the schedule."""
        if self.emission_per_round is None:
            return None
        if self.halving_rounds:
            return self.emission_per_round >> (round // self.halving_rounds)
        return self.emission_per_round


@dataclass(slots=True)
class Account:
    """A registered participant."""

    id: str
    role: str
    public_key: str
    meta: Mapping[str, JSON]
    registered_at: float


@dataclass(frozen=True, slots=True)
class PriceTerms:
    """One license type's terms: price, duration on the simulated clock, usage cap."""

    price: int
    duration: float | None = None
    max_uses: int | None = None

    def to_json(self) -> dict[str, JSON]:
        return {"price": self.price, "duration": self.duration, "max_uses": self.max_uses}


@dataclass(slots=True)
class License:
    """A purchased license; ``uses`` is metered on the ledger."""

    id: str
    buyer: str
    version: str
    license_type: str
    purchased_at: float
    expires_at: float | None
    max_uses: int | None
    uses: int = 0


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """A registered global model version and its validation results."""

    version: str
    round: int
    parent: str | None
    artifact_sha256: str
    metrics: Mapping[str, float]
    contributors: Mapping[str, float]
    time: float
    seq: int
    imported: Mapping[str, JSON] | None = None
    """For a model registered from outside the run (e.g. the Hugging Face Hub): what
    was recorded about it (name, architecture, task, files...); ``None`` otherwise."""


@dataclass(frozen=True, slots=True)
class Vote:
    """A rating of a model version, 0-5."""

    voter: str
    version: str
    score: float
    time: float
    eligible: bool = True
    """Did the voter hold ``Params.vote_earn_min_stake`` when it voted (so the vote earns
    reputation)?"""


@dataclass(frozen=True, slots=True)
class Contribution:
    """A recorded (or rejected) client update."""

    round: int
    client: str
    accepted: bool
    time: float
    update_hash: str | None = None
    num_examples: int = 0
    epsilon: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""


def _int(tx: Transaction, key: str, *, minimum: int = 0) -> int:
    value = tx.data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TransactionError(
            f"{key} must be an integer >= {minimum}, got {value!r}",
            account=tx.sender,
            tx=tx.describe(),
        )
    return value


def _str(tx: Transaction, key: str) -> str:
    value = tx.data.get(key)
    if not isinstance(value, str):
        raise TransactionError(
            f"{key} must be a string, got {value!r}", account=tx.sender, tx=tx.describe()
        )
    return value


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    return float(value)


class MarketState:
    """All market state, derived only from applied transactions."""

    def __init__(self) -> None:
        self.params = Params()
        self.genesis: dict[str, JSON] = {}
        self.accounts: dict[str, Account] = {}
        self.nonces: dict[str, int] = {}
        self.balances: dict[str, int] = {}
        self.stakes: dict[str, int] = {}
        self.unbonding: dict[str, list[tuple[float, int]]] = {}
        self.minted = 0
        self.burned = 0
        self.round_emitted: dict[int, int] = {}
        self.versions: dict[str, ModelVersion] = {}
        self.prices: dict[str, dict[str, PriceTerms]] = {}
        self.licenses: dict[str, License] = {}
        self.votes: dict[str, dict[str, Vote]] = {}
        self.contributions: list[Contribution] = []
        self.reputation_events: dict[str, list[tuple[float, float]]] = {}
        self.slash_shortfalls: dict[str, int] = {}
        """Per account: base units slashes asked for beyond the stake that remained."""
        self.block = 0
        self.size = 0
        self.last_time = 0.0
        self.ledger_id: str | None = None
        """The genesis entry's hash, which every later transaction must be signed for
        (set by the ledger or the audit once genesis is hashed)."""
        self._handlers: dict[str, Callable[[Transaction], None]] = {
            "genesis": self._genesis,
            "register": self._register,
            "mint": self._mint,
            "reward": self._reward,
            "transfer": self._transfer,
            "burn": self._burn,
            "stake": self._stake,
            "unstake": self._unstake,
            "withdraw": self._withdraw,
            "slash": self._slash,
            "contribution": self._contribution,
            "contribution_rejected": self._contribution_rejected,
            "quality": self._quality,
            "model_version": self._model_version,
            "price_list": self._price_list,
            "license_purchase": self._license_purchase,
            "license_use": self._license_use,
            "revenue_payout": self._revenue_payout,
            "vote": self._vote,
            "checkpoint": self._checkpoint,
        }

    # -- queries -----------------------------------------------------------------
    @property
    def supply(self) -> int:
        """Tokens in existence: minted - burned."""
        return self.minted - self.burned

    def balance(self, account: str) -> int:
        return self.balances.get(account, 0)

    def staked(self, account: str) -> int:
        return self.stakes.get(account, 0)

    def slash_shortfall(self, account: str) -> int:
        """Base units that slashes of ``account`` asked for but found no stake to take."""
        return self.slash_shortfalls.get(account, 0)

    def next_nonce(self, account: str) -> int:
        return self.nonces.get(account, 0)

    def public_key_for(self, tx: Transaction) -> str:
        """The key ``tx`` must verify under; raises for unknown/duplicate senders.

        An account's first entry (``genesis`` for the treasury, ``register``
        for everyone else) carries its public key, which the entry's own
        signature must verify under (proof of possession); every later entry
        verifies under that registered key and carries none.
        """
        if tx.kind in _KEYED_KINDS:
            if tx.kind == "genesis" and self.size != 0:
                raise TransactionError(
                    "genesis must be the first entry", account=tx.sender, tx=tx.describe()
                )
            if tx.sender in self.accounts:
                raise DuplicateAccountError(
                    "account is already registered", account=tx.sender, tx=tx.describe()
                )
            if tx.key is None or not _PUBLIC_KEY.match(tx.key):
                raise TransactionError(
                    "an account's first entry must carry its public key (64 hex digits)",
                    account=tx.sender,
                    tx=tx.describe(),
                )
            return tx.key
        if tx.key is not None:
            raise TransactionError(
                "only an account's first (registering) entry carries a key",
                account=tx.sender,
                tx=tx.describe(),
            )
        account = self.accounts.get(tx.sender)
        if account is None:
            raise UnknownAccountError(
                "sender is not a registered account", account=tx.sender, tx=tx.describe()
            )
        return account.public_key

    def check_ledger(self, tx: Transaction) -> None:
        """Refuse ``tx`` unless it is signed for this ledger (genesis: for none)."""
        want = None if tx.kind == "genesis" else self.ledger_id
        if tx.ledger != want:
            got = "none" if tx.ledger is None else f"{tx.ledger[:16]}…"
            mine = "none" if want is None else f"{want[:16]}…"
            raise LedgerIdError(
                f"ledger-id mismatch: signed for ledger {got}, this is ledger {mine}",
                account=tx.sender,
                tx=tx.describe(),
            )

    def total_held(self) -> int:
        """Sum of all balances, stakes and unbonding amounts (must equal supply)."""
        unbonding = sum(a for items in self.unbonding.values() for _, a in items)
        return sum(self.balances.values()) + sum(self.stakes.values()) + unbonding

    # -- application -------------------------------------------------------------
    def apply(self, tx: Transaction) -> None:
        """Validate and apply ``tx`` (signature already checked by the caller)."""
        if tx.ledger != self.ledger_id or tx.kind == "genesis":
            self.check_ledger(tx)
        if tx.key is not None or tx.kind in _KEYED_KINDS or tx.sender not in self.accounts:
            self.public_key_for(tx)  # raises for unknown / duplicate senders, bad keys
        expected = self.nonces.get(tx.sender, 0)
        if tx.nonce != expected:
            what = "reused" if tx.nonce < expected else "skipped"
            raise NonceError(
                f"nonce {what}: {tx.nonce} (the next nonce of {tx.sender} is {expected})",
                account=tx.sender,
                tx=tx.describe(),
            )
        if self.size == 0 and tx.kind != "genesis":
            raise TransactionError(
                "the first entry must be genesis", account=tx.sender, tx=tx.describe()
            )
        if tx.time < self.last_time:
            raise TransactionError(
                f"time {tx.time} is before the previous entry's {self.last_time}",
                account=tx.sender,
                tx=tx.describe(),
            )
        handler = self._handlers.get(tx.kind, self._event)
        handler(tx)
        self.nonces[tx.sender] = tx.nonce + 1
        self.size += 1
        self.last_time = tx.time

    def _treasury_only(self, tx: Transaction) -> None:
        if tx.sender != TREASURY:
            raise AuthorizationError(
                f"only the {TREASURY} may sign {tx.kind!r}", account=tx.sender, tx=tx.describe()
            )

    def _known(self, tx: Transaction, account: str) -> None:
        if account not in self.accounts:
            raise UnknownAccountError("not a registered account", account=account, tx=tx.describe())

    def _debit_check(self, tx: Transaction, account: str, amount: int) -> None:
        have = self.balance(account)
        if amount > have:
            raise InsufficientFunds(
                f"needs {amount} but has {have}", account=account, tx=tx.describe()
            )

    def _move(self, source: str, dest: str, amount: int) -> None:
        self.balances[source] = self.balance(source) - amount
        self.balances[dest] = self.balance(dest) + amount

    def _rep(self, account: str, time: float, delta: float) -> None:
        self.reputation_events.setdefault(account, []).append((time, delta))

    def _genesis(self, tx: Transaction) -> None:
        self._treasury_only(tx)
        raw = tx.data.get("params", {})
        if not isinstance(raw, Mapping):
            raise TransactionError("params must be a mapping", account=tx.sender, tx=tx.describe())
        try:
            params = Params.from_mapping(raw)
        except (TypeError, ValueError) as exc:
            raise TransactionError(str(exc), account=tx.sender, tx=tx.describe()) from None
        self.params = params
        self.genesis = dict(tx.data)
        assert tx.key is not None  # checked by public_key_for
        self.accounts[TREASURY] = Account(TREASURY, "treasury", tx.key, {}, tx.time)

    def _register(self, tx: Transaction) -> None:
        if not _ACCOUNT_ID.match(tx.sender) or tx.sender.startswith("pool:"):
            raise TransactionError("invalid account id", account=tx.sender, tx=tx.describe())
        role = _str(tx, "role")
        meta = tx.data.get("meta", {})
        if not isinstance(meta, Mapping):
            raise TransactionError("meta must be a mapping", account=tx.sender, tx=tx.describe())
        assert tx.key is not None  # checked by public_key_for
        self.accounts[tx.sender] = Account(tx.sender, role, tx.key, dict(meta), tx.time)

    def _check_supply(self, tx: Transaction, amount: int) -> None:
        cap = self.params.max_supply
        if cap is not None and self.supply + amount > cap:
            raise EmissionError(
                f"minting {amount} exceeds max supply {cap} (supply {self.supply})",
                account=tx.sender,
                tx=tx.describe(),
            )

    def _mint(self, tx: Transaction) -> None:
        self._treasury_only(tx)
        to, amount = _str(tx, "to"), _int(tx, "amount", minimum=1)
        _str(tx, "reason")
        self._known(tx, to)
        self._check_supply(tx, amount)
        self.minted += amount
        self.balances[to] = self.balance(to) + amount

    def _reward(self, tx: Transaction) -> None:
        self._treasury_only(tx)
        to, amount, rnd = _str(tx, "to"), _int(tx, "amount", minimum=1), _int(tx, "round")
        _str(tx, "mechanism")
        self._known(tx, to)
        self._check_supply(tx, amount)
        allowed = self.params.emission(rnd)
        emitted = self.round_emitted.get(rnd, 0)
        if allowed is not None and emitted + amount > allowed:
            raise EmissionError(
                f"round {rnd} emission {allowed} exceeded ({emitted} + {amount})",
                account=tx.sender,
                tx=tx.describe(),
            )
        self.round_emitted[rnd] = emitted + amount
        self.minted += amount
        self.balances[to] = self.balance(to) + amount

    def _transfer(self, tx: Transaction) -> None:
        # The commonest entry: _known, _debit_check and _move written inline.
        to, amount = _str(tx, "to"), _int(tx, "amount", minimum=1)
        if to not in self.accounts:
            self._known(tx, to)
        balances, sender = self.balances, tx.sender
        have = balances.get(sender, 0)
        if amount > have:
            self._debit_check(tx, sender, amount)
        balances[sender] = have - amount
        balances[to] = balances.get(to, 0) + amount  # read after the debit: to may be sender

    def _burn(self, tx: Transaction) -> None:
        amount = _int(tx, "amount", minimum=1)
        self._debit_check(tx, tx.sender, amount)
        self.balances[tx.sender] = self.balance(tx.sender) - amount
        self.burned += amount

    def _stake(self, tx: Transaction) -> None:
        amount = _int(tx, "amount", minimum=1)
        self._debit_check(tx, tx.sender, amount)
        self.balances[tx.sender] = self.balance(tx.sender) - amount
        self.stakes[tx.sender] = self.staked(tx.sender) + amount

    def _unstake(self, tx: Transaction) -> None:
        amount = _int(tx, "amount", minimum=1)
        have = self.staked(tx.sender)
        if amount > have:
            raise StakeError(
                f"unstaking {amount} but only {have} staked", account=tx.sender, tx=tx.describe()
            )
        self.stakes[tx.sender] = have - amount
        release = tx.time + self.params.unstake_delay
        self.unbonding.setdefault(tx.sender, []).append((release, amount))

    def _withdraw(self, tx: Transaction) -> None:
        items = self.unbonding.get(tx.sender, [])
        ready = [(t, a) for t, a in items if t <= tx.time]
        if not ready:
            pending = min((t for t, _ in items), default=None)
            why = "nothing unbonding" if pending is None else f"unbonding until t={pending}"
            raise StakeError(
                f"nothing to withdraw yet ({why})", account=tx.sender, tx=tx.describe()
            )
        self.unbonding[tx.sender] = [(t, a) for t, a in items if t > tx.time]
        self.balances[tx.sender] = self.balance(tx.sender) + sum(a for _, a in ready)

    def _slash(self, tx: Transaction) -> None:
        self._treasury_only(tx)
        account, amount = _str(tx, "account"), _int(tx, "amount", minimum=1)
        _str(tx, "reason")
        self._known(tx, account)
        # Unbonding stake is still slashable: it is taken after the locked stake.
        # A slash larger than what remains takes what remains; the shortfall is recorded
        # (a run must not abort because a mechanism asked for more than was left).
        locked = self.staked(account)
        unbonding = sorted(self.unbonding.get(account, []))
        available = locked + sum(a for _, a in unbonding)
        taken = min(amount, available)
        if taken < amount:
            self.slash_shortfalls[account] = self.slash_shortfall(account) + amount - taken
        take = min(taken, locked)
        self.stakes[account] = locked - take
        rest = taken - take
        kept: list[tuple[float, int]] = []
        for t, a in unbonding:
            cut = min(a, rest)
            rest -= cut
            if a - cut:
                kept.append((t, a - cut))
        if account in self.unbonding:
            self.unbonding[account] = kept
        self.burned += taken
        self._rep(account, tx.time, -1.0)

    def _contribution(self, tx: Transaction) -> None:
        rnd = _int(tx, "round")
        update_hash = _str(tx, "update_hash")
        examples = _int(tx, "num_examples")
        if self.staked(tx.sender) < self.params.min_stake:
            raise StakeError(
                f"contributors must stake {self.params.min_stake}, has {self.staked(tx.sender)}",
                account=tx.sender,
                tx=tx.describe(),
            )
        metrics = tx.data.get("metrics", {})
        try:
            eps = _opt_float(tx.data.get("epsilon"))
            if not isinstance(metrics, Mapping):
                raise TypeError(metrics)
            clean = {str(k): float(v) for k, v in metrics.items()}  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise TransactionError(
                "epsilon must be a number or null and metrics numbers",
                account=tx.sender,
                tx=tx.describe(),
            ) from None
        self.contributions.append(
            Contribution(rnd, tx.sender, True, tx.time, update_hash, examples, eps, clean)
        )

    def _contribution_rejected(self, tx: Transaction) -> None:
        self._treasury_only(tx)
        rnd, client, reason = _int(tx, "round"), _str(tx, "client"), _str(tx, "reason")
        self._known(tx, client)
        self.contributions.append(Contribution(rnd, client, False, tx.time, reason=reason))
        self._rep(client, tx.time, -0.5)

    def _quality(self, tx: Transaction) -> None:
        self._treasury_only(tx)
        client = _str(tx, "client")
        _int(tx, "round")
        self._known(tx, client)
        score = tx.data.get("score")
        if not isinstance(score, int | float) or isinstance(score, bool) or not 0 <= score <= 1:
            raise TransactionError(
                f"quality score must be in [0, 1], got {score!r}",
                account=client,
                tx=tx.describe(),
            )
        self._rep(client, tx.time, float(score))

    def _model_version(self, tx: Transaction) -> None:
        self._treasury_only(tx)
        version, rnd = _str(tx, "version"), _int(tx, "round")
        if version in self.versions:
            raise RegistryError(
                f"version {version} already registered", account=tx.sender, tx=tx.describe()
            )
        parent = tx.data.get("parent")
        if parent is not None and parent not in self.versions:
            raise RegistryError(
                f"unknown parent version {parent!r}", account=tx.sender, tx=tx.describe()
            )
        artifact = _str(tx, "artifact_sha256")
        if not re.fullmatch(r"[0-9a-f]{64}", artifact):
            raise RegistryError(
                "artifact_sha256 must be 64 lowercase hex digits",
                account=tx.sender,
                tx=tx.describe(),
            )
        raw_contrib = tx.data.get("contributors", {})
        raw_metrics = tx.data.get("metrics", {})
        if not isinstance(raw_contrib, Mapping) or not isinstance(raw_metrics, Mapping):
            raise RegistryError(
                "contributors and metrics must be mappings", account=tx.sender, tx=tx.describe()
            )
        contributors: dict[str, float] = {}
        for acct, share in raw_contrib.items():
            self._known(tx, acct)
            if not isinstance(share, int | float) or isinstance(share, bool) or share < 0:
                raise RegistryError(
                    f"share of {acct} must be a number >= 0", account=acct, tx=tx.describe()
                )
            contributors[acct] = float(share)
        if contributors and not sum(contributors.values()) > 0:
            raise RegistryError(
                "contributor shares sum to zero", account=tx.sender, tx=tx.describe()
            )
        metrics = {
            str(k): float(v)  # type: ignore[arg-type]
            for k, v in raw_metrics.items()
        }
        imported = tx.data.get("imported")
        if imported is not None and not isinstance(imported, Mapping):
            raise RegistryError("imported must be a mapping", account=tx.sender, tx=tx.describe())
        self.versions[version] = ModelVersion(
            version,
            rnd,
            parent if isinstance(parent, str) else None,
            artifact,
            metrics,
            contributors,
            tx.time,
            self.size,
            imported,
        )
        self._price_list(tx, allow_missing=True)

    def _price_list(self, tx: Transaction, *, allow_missing: bool = False) -> None:
        if not allow_missing:
            self._treasury_only(tx)
        version = _str(tx, "version")
        self._version(tx, version)
        raw = tx.data.get("prices")
        if raw is None and allow_missing:
            return
        if not isinstance(raw, Mapping):
            raise LicenseError("prices must be a mapping", account=tx.sender, tx=tx.describe())
        terms: dict[str, PriceTerms] = {}
        for name, spec in raw.items():
            try:
                if not isinstance(spec, Mapping):
                    raise TypeError(spec)
                price = spec["price"]
                max_uses = spec.get("max_uses")
                if not isinstance(price, int) or isinstance(price, bool) or price < 0:
                    raise TypeError(price)
                if max_uses is not None and (not isinstance(max_uses, int) or max_uses < 1):
                    raise TypeError(max_uses)
                terms[name] = PriceTerms(price, _opt_float(spec.get("duration")), max_uses)
            except (KeyError, TypeError):
                raise LicenseError(
                    f"bad terms for license type {name!r}: {spec!r}",
                    account=tx.sender,
                    tx=tx.describe(),
                ) from None
        self.prices[version] = terms

    def _version(self, tx: Transaction, version: str) -> ModelVersion:
        found = self.versions.get(version)
        if found is None:
            raise RegistryError(
                f"unknown model version {version!r}", account=tx.sender, tx=tx.describe()
            )
        return found

    def _license_purchase(self, tx: Transaction) -> None:
        version, kind = _str(tx, "version"), _str(tx, "license_type")
        self._version(tx, version)
        terms = self.prices.get(version, {}).get(kind)
        if terms is None:
            valid = ", ".join(sorted(self.prices.get(version, {}))) or "none"
            raise LicenseError(
                f"version {version} offers no {kind!r} license (offers: {valid})",
                account=tx.sender,
                tx=tx.describe(),
            )
        self._debit_check(tx, tx.sender, terms.price)
        lic_id = f"lic-{len(self.licenses) + 1:06d}"
        expires = None if terms.duration is None else tx.time + terms.duration
        if terms.price:
            self._move(tx.sender, pool_account(version), terms.price)
        self.licenses[lic_id] = License(
            lic_id, tx.sender, version, kind, tx.time, expires, terms.max_uses
        )

    def check_license(self, tx: Transaction, lic_id: str, units: int) -> License:
        """The license ``lic_id`` if ``tx.sender`` may use it ``units`` times at ``tx.time``."""
        lic = self.licenses.get(lic_id)
        if lic is None:
            raise LicenseError(f"unknown license {lic_id!r}", account=tx.sender, tx=tx.describe())
        if lic.buyer != tx.sender:
            raise LicenseError(
                f"license {lic_id} belongs to {lic.buyer}", account=tx.sender, tx=tx.describe()
            )
        if lic.expires_at is not None and tx.time >= lic.expires_at:
            raise LicenseError(
                f"license {lic_id} expired at t={lic.expires_at}",
                account=tx.sender,
                tx=tx.describe(),
            )
        if lic.max_uses is not None and lic.uses + units > lic.max_uses:
            raise LicenseError(
                f"license {lic_id} exhausted ({lic.uses}/{lic.max_uses} uses)",
                account=tx.sender,
                tx=tx.describe(),
            )
        return lic

    def _license_use(self, tx: Transaction) -> None:
        units = _int(tx, "units", minimum=1)
        lic = self.check_license(tx, _str(tx, "license"), units)
        lic.uses += units

    def _revenue_payout(self, tx: Transaction) -> None:
        self._treasury_only(tx)
        version, to, amount = _str(tx, "version"), _str(tx, "to"), _int(tx, "amount", minimum=1)
        self._version(tx, version)
        self._known(tx, to)
        pool = pool_account(version)
        self._debit_check(tx, pool, amount)
        self._move(pool, to, amount)

    def _vote(self, tx: Transaction) -> None:
        version = _str(tx, "version")
        self._version(tx, version)
        score = tx.data.get("score")
        if (
            not isinstance(score, int | float)
            or isinstance(score, bool)
            or not 0 <= score <= 5
            or math.isnan(score)
        ):
            raise VoteError(
                f"score must be in [0, 5], got {score!r}", account=tx.sender, tx=tx.describe()
            )
        if tx.sender in self.votes.get(version, {}):
            raise VoteError(f"already voted on {version}", account=tx.sender, tx=tx.describe())
        p = self.params
        if self.staked(tx.sender) < p.vote_min_stake:
            raise VoteError(
                f"voters must stake {p.vote_min_stake}, has {self.staked(tx.sender)}",
                account=tx.sender,
                tx=tx.describe(),
            )
        if p.vote_min_reputation > 0:
            from marketplace.reputation import reputation

            rep = reputation(self, tx.sender, now=tx.time)
            if rep < p.vote_min_reputation:
                raise VoteError(
                    f"voters need reputation {p.vote_min_reputation}, has {rep:.3f}",
                    account=tx.sender,
                    tx=tx.describe(),
                )
        eligible = self.staked(tx.sender) >= p.vote_earn_min_stake
        self.votes.setdefault(version, {})[tx.sender] = Vote(
            tx.sender, version, float(score), tx.time, eligible
        )

    def _checkpoint(self, tx: Transaction) -> None:
        self._treasury_only(tx)
        if _int(tx, "block") != self.block or _int(tx, "tree_size") != self.size:
            raise TransactionError(
                f"checkpoint must seal block {self.block} at tree size {self.size}",
                account=tx.sender,
                tx=tx.describe(),
            )
        _str(tx, "root")
        self.block += 1

    def _event(self, tx: Transaction) -> None:
        if not _EVENT_KIND.match(tx.kind):
            raise TransactionError(
                f"invalid event kind {tx.kind!r}", account=tx.sender, tx=tx.describe()
            )
        self._treasury_only(tx)


RESERVED_KINDS = frozenset(MarketState()._handlers)
