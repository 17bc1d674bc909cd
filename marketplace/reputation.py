"""Reputation derived from the ledger, decaying on the simulated clock.

An account's reputation has two parts, each event weighted by
``w = 2 ** (-(now - t) / half_life)`` so old behaviour counts less:

* **contribution events**, summed: quality scores (``quality`` entries),
  ``+score`` in [0, 1]; rejected contributions ``-0.5``; slashes ``-1.0``.
* **voting**, a bounded average: each *eligible* vote's agreement with the
  consensus of the *other* voters on that version (the median of their ballots),
  ``a = 0.5 · (1 − |score − consensus| / 5) − 0.25`` in [-0.25, 0.25]; the voting
  part is the decay-weighted mean ``Σ w·a / Σ w``, so it lies in [-0.25, 0.25]
  however many votes are cast.

Why this shape: a voter compared with a consensus that includes its own ballot,
with agreement summed over votes, could farm reputation by voting alone or in a
bloc (a three-member stuffing cabal reached 1.91 while honest data owners had 0).
Excluding the voter from its consensus, averaging instead of summing, and
counting only eligible votes (a vote of an account without the stake
``Params.vote_earn_min_stake`` earns nothing) removes that. A vote with no other
ballot on its version has no consensus to agree with and earns nothing.

The total is clipped below at zero. Nothing is stored: the function re-derives it
from a :class:`~marketplace.state.MarketState`, live or replayed by the audit. The
state is typed structurally (:class:`ReputationSource`), so this module does not
import ``marketplace.state``, which calls it to check voter eligibility.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Protocol

__all__ = ["ReputationSource", "agreement", "reputation", "vote_agreement"]


class _Vote(Protocol):
    @property
    def score(self) -> float: ...
    @property
    def time(self) -> float: ...
    @property
    def eligible(self) -> bool: ...


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


def agreement(score: float, consensus: float) -> float:
    """``0.5 · (1 − |score − consensus| / 5) − 0.25``: +0.25 on the consensus, −0.25 at
    the far end of the 0–5 scale."""
    return 0.5 * (1.0 - abs(score - consensus) / 5.0) - 0.25


def vote_agreement(state: ReputationSource, account: str) -> list[tuple[float, float]]:
    """``(time, agreement)`` of each of ``account``'s eligible votes with the median of
    the other voters' ballots on the same version."""
    events: list[tuple[float, float]] = []
    for ballots in state.votes.values():
        vote = ballots.get(account)
        if vote is None or not vote.eligible:
            continue
        others = [v.score for voter, v in ballots.items() if voter != account]
        if others:
            events.append((vote.time, agreement(vote.score, statistics.median(others))))
    return events


def _weight(t_now: float, t: float, half_life: float) -> float:
    return float(2.0 ** (-max(0.0, t_now - t) / half_life))


def reputation(state: ReputationSource, account: str, *, now: float | None = None) -> float:
    """Decayed reputation of ``account`` at simulated time ``now`` (default: ledger time)."""
    t_now = state.last_time if now is None else now
    half_life = state.params.reputation_half_life
    total = sum(
        delta * _weight(t_now, t, half_life)
        for t, delta in state.reputation_events.get(account, [])
    )
    votes = vote_agreement(state, account)
    if votes:
        weights = [_weight(t_now, t, half_life) for t, _ in votes]
        if sum(weights) > 0:
            total += sum(w * a for w, (_, a) in zip(weights, votes, strict=True)) / sum(weights)
    return max(0.0, total)
