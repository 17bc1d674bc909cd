"""Market intents: what an agent wants to do, for the marketplace to validate and apply.

Agents emit intents; only the marketplace applies state transitions and writes the ledger
(radCAD's policy / state-update split; docs/ARCHITECTURE.md). Intents are small frozen
values with integer token amounts in base units (``marketplace.TOKEN`` per token) and string
account ids, so they can be logged, compared and replayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Bid",
    "BuyLicense",
    "Contribute",
    "Intent",
    "Join",
    "Leave",
    "LicenseType",
    "Register",
    "SetEffort",
    "Stake",
    "Unstake",
    "UseLicense",
    "Vote",
]

LicenseType = Literal["perpetual", "subscription", "per_use"]
"""License kinds an intent may name; the marketplace defines their terms."""


def _require_id(value: str, field: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")


def _require_amount(value: int, field: str, *, positive: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an int of base units, got {value!r}")
    if value < (1 if positive else 0):
        raise ValueError(f"{field} must be {'> 0' if positive else '>= 0'}, got {value}")


@dataclass(frozen=True, slots=True)
class Contribute:
    """A client offers its update for ``round`` (trained on ``num_examples`` samples)."""

    client: str
    round: int
    num_examples: int

    def __post_init__(self) -> None:
        _require_id(self.client, "client")
        _require_amount(self.round, "round")
        _require_amount(self.num_examples, "num_examples", positive=False)


@dataclass(frozen=True, slots=True)
class Bid:
    """A buyer offers ``price`` base units for a license on a model version."""

    buyer: str
    version: str
    license_type: LicenseType
    price: int

    def __post_init__(self) -> None:
        _require_id(self.buyer, "buyer")
        _require_id(self.version, "version")
        _require_amount(self.price, "price")


@dataclass(frozen=True, slots=True)
class BuyLicense:
    """A buyer buys a license on a model version at the listed price."""

    buyer: str
    version: str
    license_type: LicenseType

    def __post_init__(self) -> None:
        _require_id(self.buyer, "buyer")
        _require_id(self.version, "version")


@dataclass(frozen=True, slots=True)
class UseLicense:
    """A buyer uses (e.g. queries) a model version under a license it holds."""

    buyer: str
    version: str
    uses: int = 1

    def __post_init__(self) -> None:
        _require_id(self.buyer, "buyer")
        _require_id(self.version, "version")
        _require_amount(self.uses, "uses")


@dataclass(frozen=True, slots=True)
class Vote:
    """An account rates a model version; the rating rule decides the scale."""

    voter: str
    version: str
    rating: float

    def __post_init__(self) -> None:
        _require_id(self.voter, "voter")
        _require_id(self.version, "version")
        if not math.isfinite(self.rating):
            raise ValueError(f"rating must be finite, got {self.rating!r}")


@dataclass(frozen=True, slots=True)
class Stake:
    """An account locks ``amount`` base units as stake."""

    account: str
    amount: int

    def __post_init__(self) -> None:
        _require_id(self.account, "account")
        _require_amount(self.amount, "amount")


@dataclass(frozen=True, slots=True)
class Unstake:
    """An account asks to unlock ``amount`` base units of stake."""

    account: str
    amount: int

    def __post_init__(self) -> None:
        _require_id(self.account, "account")
        _require_amount(self.amount, "amount")


@dataclass(frozen=True, slots=True)
class Leave:
    """An account leaves the market (churn)."""

    account: str

    def __post_init__(self) -> None:
        _require_id(self.account, "account")


@dataclass(frozen=True, slots=True)
class Join:
    """An account joins the market in ``role`` (``client``, ``buyer``, ...)."""

    account: str
    role: str

    def __post_init__(self) -> None:
        _require_id(self.account, "account")
        _require_id(self.role, "role")


@dataclass(frozen=True, slots=True)
class Register:
    """``account`` asks to be registered in ``role`` before it acts (a voter, say);
    an account that already exists keeps its registration."""

    account: str
    role: str

    def __post_init__(self) -> None:
        _require_id(self.account, "account")
        _require_id(self.role, "role")


@dataclass(frozen=True, slots=True)
class SetEffort:
    """``account`` will train ``epochs`` local epochs per round from its next task on
    (the effort a rational participant chose; the world applies it to the client's task,
    its time, its cost and its privacy planning)."""

    account: str
    epochs: int

    def __post_init__(self) -> None:
        _require_id(self.account, "account")
        _require_amount(self.epochs, "epochs")


Intent = (
    Contribute
    | Bid
    | BuyLicense
    | UseLicense
    | Vote
    | Stake
    | Unstake
    | Leave
    | Join
    | Register
    | SetEffort
)
"""Any market intent."""
