"""Reputation derived from the ledger, decaying on the simulated clock.

An account's reputation is a sum of ledger-backed events, each weighted by
``2 ** (-(now - t) / half_life)`` so old behaviour counts less:

* contribution quality scores (``quality`` entries), ``+score`` in [0, 1];
* rejected contributions, ``-0.5``; slashes, ``-1.0``;
* agreement of each vote with the version's consensus (the median of all
  votes on it), ``+0.5 * (1 - |score - consensus| / 5) - 0.25`` in [-0.25, 0.25].

It is clipped below at zero. Nothing is stored: the function re-derives it from
a :class:`~marketplace.state.MarketState`, live or replayed by the audit.
"""

from __future__ import annotations

import statistics

from marketplace.state import MarketState

__all__ = ["reputation", "vote_agreement"]


def vote_agreement(state: MarketState, account: str) -> list[tuple[float, float]]:
    """``(time, delta)`` agreement events of ``account``'s votes."""
    events: list[tuple[float, float]] = []
    for ballots in state.votes.values():
        vote = ballots.get(account)
        if vote is None or len(ballots) < 2:
            continue
        consensus = statistics.median(v.score for v in ballots.values())
        events.append((vote.time, 0.5 * (1 - abs(vote.score - consensus) / 5) - 0.25))
    return events


def reputation(state: MarketState, account: str, *, now: float | None = None) -> float:
    """Decayed reputation of ``account`` at simulated time ``now`` (default: ledger time)."""
    t_now = state.last_time if now is None else now
    half_life = state.params.reputation_half_life
    total = 0.0
    for t, delta in [*state.reputation_events.get(account, []), *vote_agreement(state, account)]:
        age = max(0.0, t_now - t)
        total += delta * 2.0 ** (-age / half_life)
    return max(0.0, total)
