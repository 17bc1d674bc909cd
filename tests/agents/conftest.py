"""Shared helpers for the agents tests."""

from __future__ import annotations

import numpy as np

from agents import RoundContext


def ctx(round: int = 1, *, seed: int = 0, num_classes: int = 10) -> RoundContext:
    """A round context for ``client-000`` with a seeded generator."""
    return RoundContext(
        round=round, client="client-000", num_classes=num_classes, rng=np.random.default_rng(seed)
    )
