"""What a stage is: a small object with a name that advances one round's context."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol, runtime_checkable

from simulation.world.context import RoundContext

__all__ = ["Clock", "Stage"]

Clock = Callable[[], float]
"""The simulated time now (the world's simpy clock)."""


@runtime_checkable
class Stage(Protocol):
    """One step of a round. ``run`` reads and extends ``ctx``; it returns the simulated
    seconds the round's clock must advance after it (``None``: no time passes)."""

    name: ClassVar[str]

    def run(self, ctx: RoundContext) -> float | None: ...
