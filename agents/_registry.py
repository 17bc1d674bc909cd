"""A small name → object registry shared by the behaviour and coalition-attack tables.

Why a class of our own: ``agents`` depends on numpy, pydantic and the standard library only
(see docs/ARCHITECTURE.md), so it cannot import ``simulation.registry``. The semantics are the
same as Opacus' ``create_accountant``: unknown or duplicate names raise ``ValueError`` that
lists the valid names, so a typo in a scenario file fails loudly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A read-mostly mapping from a scenario-file name to an object (usually a class).

    Args:
        kind: what the entries are, used in error messages (``"training behaviour"``).
    """

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._entries: dict[str, T] = {}

    @property
    def kind(self) -> str:
        """What the entries are, e.g. ``"training behaviour"``."""
        return self._kind

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a duplicate name raises ``ValueError``."""
        if not name or name != name.strip():
            raise ValueError(f"invalid {self._kind} name {name!r}")
        if name in self._entries:
            raise ValueError(f"{self._kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove and return the entry ``name`` (plugins and tests that registered one)."""
        self.get_or_raise(name)
        return self._entries.pop(name)

    def get_or_raise(self, name: str) -> T:
        """The entry for ``name``; an unknown name raises ``ValueError`` listing valid names."""
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries))
            raise ValueError(f"unknown {self._kind} {name!r}; valid names: {valid}") from None

    def names(self) -> tuple[str, ...]:
        """All registered names, sorted."""
        return tuple(sorted(self._entries))

    def __getitem__(self, name: str) -> T:
        return self.get_or_raise(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self._kind!r}, names={list(self.names())!r})"
