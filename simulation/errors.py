"""Errors raised by the simulation layer.

::

    FedMarketError
     ├── ScenarioError      a scenario file or override is invalid (file, field, reason)
     └── RunError           a run could not complete (Flower, Ray, I/O)
          └── RunInterrupted  a signal (SIGTERM, SIGINT) stopped it cleanly

The CLI maps ``ScenarioError`` to exit code 2 and ``RunError`` to 3, printing
one line per problem and no traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class FedMarketError(Exception):
    """Base class of simulation-layer errors."""


@dataclass(frozen=True)
class Problem:
    """One problem in a scenario: where (file, dotted field path) and why."""

    source: str
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.field}" if self.field else self.source
        return f"{where} -> {self.reason}"


class ScenarioError(FedMarketError):
    """Raised when a scenario file, a ``--set`` override or a sweep file is invalid."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RunError(FedMarketError):
    """Raised when a run cannot complete (the simulation engine failed, output not writable)."""


class RunInterrupted(RunError):
    """Raised when a run is stopped on request (SIGTERM, SIGINT): the open ledger
    block is sealed and the partial results stay where they are. ``signum`` is
    the signal, when one caused it (the CLI exits with 128 + signum)."""

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum
