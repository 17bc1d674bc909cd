"""Hand-built stand-ins for a stage's collaborators: a market that records calls, and
a population whose answers the test chooses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulation.world.context import Federation
from simulation.world.identities import IdentityBook


class FakeState:
    """Stakes a slash burns, and the shortfalls of slashes larger than a stake."""

    def __init__(self) -> None:
        self.stakes: dict[str, int] = {}
        self.shortfalls: dict[str, int] = {}

    def slash_shortfall(self, account: str) -> int:
        return self.shortfalls.get(account, 0)


class FakeMarket:
    """Records every call; returns what the stages need."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.versions_: list[Any] = []
        self.balances: dict[str, int] = {}
        self.state = FakeState()

    def _log(self, name: str, **kw: Any) -> None:
        self.calls.append((name, kw))

    def record(self, kind: str, data: dict[str, Any]) -> None:
        self._log("record", kind=kind, data=data)

    def reject_contribution(self, **kw: Any) -> None:
        self._log("reject_contribution", **kw)

    def record_contribution(self, **kw: Any) -> None:
        self._log("record_contribution", **kw)

    def record_quality(self, **kw: Any) -> None:
        self._log("record_quality", **kw)

    def register_model_version(self, **kw: Any) -> str:
        self._log("register_model_version", **kw)
        return f"v{len([c for c in self.calls if c[0] == 'register_model_version']):04d}"

    def set_price_list(self, version: str, prices: Any) -> None:
        self._log("set_price_list", version=version, prices=prices)

    def reward(self, **kw: Any) -> None:
        self._log("reward", **kw)

    def slash(self, account: str, amount: int, *, reason: str) -> None:
        self._log("slash", account=account, amount=amount, reason=reason)
        if account in self.state.stakes:  # stakes the test set: burn, note the shortfall
            taken = min(amount, self.state.stakes[account])
            self.state.stakes[account] -= taken
            short = self.state.shortfalls.get(account, 0) + amount - taken
            self.state.shortfalls[account] = short

    def transfer(self, sender: str, to: str, amount: int, *, memo: str = "") -> None:
        self._log("transfer", sender=sender, to=to, amount=amount)

    def end_block(self) -> None:
        self._log("end_block")

    def versions(self) -> list[Any]:
        return self.versions_

    def balance(self, account: str) -> int:
        return self.balances.get(account, 0)

    def distribute_revenue(self, version: str, payouts: Any = None) -> list[Any]:
        self._log("distribute_revenue", version=version, payouts=payouts)
        return []

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls]


@dataclass
class FakePopulation:
    """A population whose behaviour the test sets: who is absent, who drops out,
    epochs, speed factors and attackers."""

    identities: IdentityBook
    absent: set[int] = field(default_factory=set)
    drop: set[int] = field(default_factory=set)
    epochs_of: dict[int, int] = field(default_factory=dict)
    speed: dict[int, float] = field(default_factory=dict)
    attacking: list[str] = field(default_factory=list)
    coalitions: list[Any] = field(default_factory=list)
    market: dict[str, list[str]] = field(default_factory=dict)
    """Attacking market behaviour → its members' accounts."""

    def present(self, client: int, round_: int, now: float) -> bool:
        return client not in self.absent

    def absent_now(self, round_: int, now: float) -> set[int]:
        return set(self.absent)

    def drops_out(self, client: int, round_: int, now: float, num_classes: int) -> bool:
        return client in self.drop

    def epochs(self, client: int, round_: int, now: float, base: int) -> int:
        return self.epochs_of.get(client, base)

    def speed_factor(self, client: int, round_: int, now: float) -> float:
        return self.speed.get(client, 1.0)

    def attackers(self) -> list[str]:
        return self.attacking

    def market_attackers(self) -> dict[str, list[str]]:
        return self.market


def federation(n: int, weights: dict[str, np.ndarray] | None = None) -> Federation:
    book = IdentityBook([f"client-{i:03d}" for i in range(n)])
    w = weights if weights is not None else {"w": np.zeros(2, np.float32)}
    return Federation(w, book, active=set(range(n)))
