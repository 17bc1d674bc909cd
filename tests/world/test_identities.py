"""The identity book's slot accessors agree with each other after re-entries."""

from __future__ import annotations

from simulation.world.identities import IdentityBook


def test_first_is_the_oldest_identity_of_the_slot_after_renames() -> None:
    book = IdentityBook(["client-000", "client-001", "client-002"], {2: 0})
    book.rename(1, "client-001~1")
    book.rename(1, "client-001~2")
    assert [book.first(c) for c in range(3)] == ["client-000", "client-001", "client-002"]
    assert [book.first(c) for c in range(3)] == [book.of_slot(c)[0] for c in range(3)]
    assert book.current(1) == "client-001~2" and book.owner("client-002") == "client-000"
