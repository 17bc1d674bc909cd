"""Reputation derived from the ledger, decaying on the simulated clock.

An account's reputation is a sum of ledger-backed events, each weighted by
``2 ** (-(now - t) / half_life)`` so old behaviour counts less:

* contribution quality scores (``quality`` entries), ``+score`` in [0, 1];
* rejected contributions, ``-0.5``; slashes, ``-1.0``;
* agreement of each vote with the version's consensus (the median of all
  votes on it), ``+0.5 * (1 - |score - consensus| / 5) - 0.25`` in [-0.25, 0.25].

It is clipped below at zero. Nothing is stored: the function re-derives it from
a :class:`~marketplace.state.MarketState`, live or replayed by the audit. The
state is typed structurally (:class:`ReputationSource`), so this module does
not import ``marketplace.state``, which calls it to check voter eligibility.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Protocol

__all__ = ["ReputationSource", "reputation", "vote_agreement"]


class _Vote(Protocol):
    @property
    def score(self) -> float: ...
    @property
    def time(self) -> float: ...


class _Params(Protocol):
    @property
    def reputation_half_life(self) -> float: ...


class ReputationSource(Protocol):
    """What reputation reads from a market state: votes, events, the clock, the half-life."""

    @property
    def votes(self) -> Mapping[str, Mapping[str, _Vote]]: ...
    @property
    def reputation_events(self) -> Mapping[str, list[tuple[float, float]]]: ...
    @property
    def last_time(self) -> float: ...
    @property
    def params(self) -> _Params: ...


def vote_agreement(state: ReputationSource, account: str) -> list[tuple[float, float]]:
    """``(time, delta)`` agreement events of ``account``'s votes."""
    events: list[tuple[float, float]] = []
    for ballots in state.votes.values():
        vote = ballots.get(account)
        if vote is None or len(ballots) < 2:
            continue
        consensus = statistics.median(v.score for v in ballots.values())
        events.append((vote.time, 0.5 * (1 - abs(vote.score - consensus) / 5) - 0.25))
    return events


def reputation(state: ReputationSource, account: str, *, now: float | None = None) -> float:
    """Decayed reputation of ``account`` at simulated time ``now`` (default: ledger time)."""
    t_now = state.last_time if now is None else now
    half_life = state.params.reputation_half_life
    total = 0.0
    for t, delta in [*state.reputation_events.get(account, []), *vote_agreement(state, account)]:
        age = max(0.0, t_now - t)
        total += delta * 2.0 ** (-age / half_life)
    return max(0.0, total)
