"""Identities and the data owners behind them.

The ledger sees *identities* (accounts). Privacy, ground truth and every count,
share and Gini are about *data owners*: one owner may act through several
identities — a whitewasher's fresh names after each re-entry, the Sybil
identities that split or copy one owner's rows. :class:`IdentityBook` is the one
place that maps each identity to its owner and each client slot to the identity
it currently acts as. It is ground truth: mechanisms never see it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Identity", "IdentityBook"]


@dataclass(frozen=True)
class Identity:
    """An account on the ledger, the client slot it acts for, and its data owner."""

    account: str
    client: int
    owner: str


class IdentityBook:
    """Client slots → current identity; identity → owner and slot.

    ``accounts[c]`` is client slot ``c``'s first identity; ``owner_slot[c]`` is the
    slot whose data it trains on (itself, or a Sybil group's owner).
    """

    def __init__(self, accounts: Iterable[str], owner_slot: Mapping[int, int] | None = None):
        self._first = list(accounts)
        owner_slot = owner_slot or {}
        self._owner_of_slot = [self._first[owner_slot.get(c, c)] for c in range(len(self._first))]
        self._current = list(self._first)
        owners = self._owner_of_slot
        self._by_account: dict[str, Identity] = {
            account: Identity(account, c, owners[c]) for c, account in enumerate(self._first)
        }
        if len(self._by_account) < len(self._first):
            seen: set[str] = set()
            for account in self._first:
                if account in seen:
                    raise ValueError(f"identity {account!r} already exists")
                seen.add(account)
        self._of_slot: list[list[str]] = [[account] for account in self._first]

    def _add(self, account: str, client: int) -> Identity:
        if account in self._by_account:
            raise ValueError(f"identity {account!r} already exists")
        ident = Identity(account, client, self._owner_of_slot[client])
        self._by_account[account] = ident
        self._of_slot[client].append(account)
        return ident

    def __len__(self) -> int:
        return len(self._first)

    def current(self, client: int) -> str:
        """The identity client slot ``client`` acts as now."""
        return self._current[client]

    def first(self, client: int) -> str:
        """Slot ``client``'s first identity (``of_slot(client)[0]``, without the copy)."""
        return self._first[client]

    def currents(self) -> list[str]:
        """Every slot's current identity, by slot."""
        return list(self._current)

    def rename(self, client: int, account: str) -> Identity:
        """Slot ``client`` re-enters under a fresh identity (it keeps its data)."""
        ident = self._add(account, client)
        self._current[client] = account
        return ident

    def slot(self, account: str) -> int | None:
        """The client slot of ``account`` (any of its identities), if it is a client."""
        ident = self._by_account.get(account)
        return ident.client if ident is not None else None

    def get(self, account: str) -> Identity | None:
        return self._by_account.get(account)

    def owner(self, account: str) -> str:
        """The data owner behind ``account`` (``account`` itself if it is no client)."""
        ident = self._by_account.get(account)
        return ident.owner if ident is not None else account

    def of_slot(self, client: int) -> list[str]:
        """Every identity slot ``client`` has used, oldest first."""
        return list(self._of_slot[client])

    def all(self) -> list[Identity]:
        """Every identity, by slot then age."""
        return [self._by_account[a] for ids in self._of_slot for a in ids]

    def owners(self) -> dict[str, str]:
        """identity → owner, for every identity."""
        return {i.account: i.owner for i in self.all()}
