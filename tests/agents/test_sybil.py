"""Sybil group spec and index assignment."""

from __future__ import annotations

import numpy as np
import pytest

from agents import SybilGroup, sybil_indices


def test_split_partitions_indices_exactly() -> None:
    # Prepare: 10 owner indices over 3 identities -> chunk sizes 4, 3, 3
    owner = np.array([12, 3, 7, 40, 41, 42, 5, 6, 99, 100])
    group = SybilGroup(owner="mallory", identities=("client-001", "client-002", "client-003"))
    # Execute
    parts = sybil_indices(owner, group)
    # Assert
    np.testing.assert_array_equal(parts["client-001"], [12, 3, 7, 40])
    np.testing.assert_array_equal(parts["client-002"], [41, 42, 5])
    np.testing.assert_array_equal(parts["client-003"], [6, 99, 100])


def test_split_with_rng_is_disjoint_and_covering() -> None:
    owner = np.arange(100, 137)
    group = SybilGroup(owner="o", identities=("a", "b", "c", "d"), mode="split")
    parts = sybil_indices(owner, group, np.random.default_rng(3))
    together = np.concatenate(list(parts.values()))
    assert sorted(together.tolist()) == owner.tolist()  # covering, and no index twice
    assert sorted(len(p) for p in parts.values()) == [9, 9, 9, 10]
    again = sybil_indices(owner, group, np.random.default_rng(3))
    for k in parts:
        np.testing.assert_array_equal(parts[k], again[k])


def test_duplicate_gives_every_identity_the_same_indices() -> None:
    owner = np.array([4, 8, 15, 16, 23, 42])
    group = SybilGroup(owner="o", identities=("client-010", "client-011"), mode="duplicate")
    parts = sybil_indices(owner, group)
    for p in parts.values():
        np.testing.assert_array_equal(p, owner)
    assert parts["client-010"] is not parts["client-011"]


def test_sybil_group_rejects_duplicate_identities() -> None:
    with pytest.raises(ValueError, match="distinct"):
        SybilGroup(owner="o", identities=("a", "a"))
    with pytest.raises(ValueError):
        SybilGroup(owner="o", identities=("a",), mode="clone")  # type: ignore[arg-type]
