"""Sybil identities: one owner controlling several client identities.

Fung, Yoon & Beschastnikh (2020), "The limitations of federated learning in Sybil settings"
(RAID): a single participant joins under many identities, either *splitting* its data among
them (more rewards for the same data) or *duplicating* it (more votes for the same update).
This module holds the spec and the data side; duplicated updates are a server-side coalition
attack (``agents.coalition.SybilDuplicateAttack``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from agents._params import BaseParams

__all__ = ["SybilGroup", "sybil_indices"]


class SybilGroup(BaseParams):
    """One owner and the client identities it controls.

    Attributes:
        owner: the real participant behind the identities (may or may not be one of them).
        identities: client ids (``client-007``), distinct, in the order data chunks are dealt.
        mode: ``"split"`` deals the owner's samples among the identities (disjoint, covering);
            ``"duplicate"`` gives every identity all of them.
    """

    owner: str = Field(min_length=1)
    identities: tuple[str, ...] = Field(min_length=1)
    mode: Literal["split", "duplicate"] = "split"

    @field_validator("identities")
    @classmethod
    def _distinct(cls, identities: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(identities)) != len(identities):
            raise ValueError(f"identities must be distinct, got {list(identities)}")
        if any(not i for i in identities):
            raise ValueError("identities must be non-empty strings")
        return identities


def sybil_indices(
    owner_indices: np.ndarray, group: SybilGroup, rng: np.random.Generator | None = None
) -> dict[str, np.ndarray]:
    """Each identity's sample indices, given the owner's.

    ``"split"``: with no ``rng`` the owner's indices are cut, in order, into ``k`` contiguous
    chunks whose sizes differ by at most one (the first ``n mod k`` get the extra sample, as
    ``np.array_split``); with an ``rng`` they are shuffled first and each chunk is sorted.
    ``"duplicate"``: every identity gets a copy of all the owner's indices.
    Pure: the input is never mutated and no array is shared between identities.
    """
    indices = np.asarray(owner_indices)
    if indices.ndim != 1:
        raise ValueError(f"owner_indices must be 1-D, got shape {indices.shape}")
    if group.mode == "duplicate":
        return {identity: indices.copy() for identity in group.identities}
    if rng is None:
        chunks = np.array_split(indices, len(group.identities))
        return {i: c.copy() for i, c in zip(group.identities, chunks, strict=True)}
    shuffled = rng.permutation(indices)
    chunks = np.array_split(shuffled, len(group.identities))
    return {i: np.sort(c) for i, c in zip(group.identities, chunks, strict=True)}
