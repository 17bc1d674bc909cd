"""Errors raised by the simulation layer.

::

    FedMarketError
     ├── ScenarioError      a scenario file or override is invalid (file, field, reason)
     └── RunError           a run could not complete (Flower, Ray, I/O)
          └── RunInterrupted  a signal (SIGTERM, SIGINT) stopped it cleanly

The CLI maps ``ScenarioError`` to exit code 2 and ``RunError`` to 3, printing
one line per problem (:func:`problem_lines`) and no traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_SHOWN = 50
"""Problems printed for one error; the rest are counted (a 50,000-item list of
wrong values must not print 50,000 lines)."""
_FIELD_CHARS = 200
_REASON_CHARS = 500


def _clean(text: str, limit: int) -> str:
    """One printable line: control characters escaped (no newlines, no terminal
    escape sequences from a hostile key), at most ``limit`` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FedMarketError(Exception):
    """Base class of simulation-layer errors."""


@dataclass(frozen=True)
class Problem:
    """One problem in a scenario: where (file, dotted field path) and why."""

    source: str
    field: str
    reason: str

    def __str__(self) -> str:
        source = _clean(self.source, _FIELD_CHARS)
        where = f"{source}: {_clean(self.field, _FIELD_CHARS)}" if self.field else source
        return f"{where} -> {_clean(self.reason, _REASON_CHARS)}"


def problem_lines(problems: Sequence[Problem]) -> list[str]:
    """The lines the CLI prints: one per distinct problem, at most :data:`MAX_SHOWN`
    of them, then one line counting the rest."""
    lines = list(dict.fromkeys(str(p) for p in problems))
    if len(lines) <= MAX_SHOWN:
        return lines
    rest = len(lines) - MAX_SHOWN
    source = _clean(problems[0].source, _FIELD_CHARS)
    return [*lines[:MAX_SHOWN], f"{source} -> {rest} more problems not shown"]


class ScenarioError(FedMarketError):
    """Raised when a scenario file, a ``--set`` override or a sweep file is invalid."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(problems)

    def __str__(self) -> str:
        return "\n".join(problem_lines(self.problems))


class RunError(FedMarketError):
    """Raised when a run cannot complete (the simulation engine failed, output not writable)."""


class RunInterrupted(RunError):
    """Raised when a run is stopped on request (SIGTERM, SIGINT): the open ledger
    block is sealed and the partial results stay where they are. ``signum`` is
    the signal, when one caused it (the CLI exits with 128 + signum)."""

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum
