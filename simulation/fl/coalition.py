"""The model a round's configured aggregator would have built from a coalition's replies.

The reference contribution (``contribution.reference: true``) is the Shapley value
of the round under the utility ``U(S)`` = minus the validation loss of *that*
model: under Krum a client Krum would not select adds nothing, under FoolsGold a
Sybil's copy is down-weighted as FoolsGold down-weights it. The FedAvg
counterfactual (``marketplace.contribution.coalition_utility``) is the same thing
only for FedAvg and FedProx, whose server step is the example-weighted mean.

Coalitions smaller than the rule's minimum (:func:`simulation.fl.aggregation.min_replies`:
Bulyan's ``4f + 3``, Krum's ``2f + 3``) and the empty coalition get the utility of
the previous global model: the model the round keeps when aggregation fails.
Every hypothetical aggregation runs on the strategy's ``what_if()`` copy (FoolsGold's
histories, FLTrust's root update, DP-FedAvg's noise generator and accountant stay
as they were), so computing the reference never changes the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from marketplace.contribution import Utility, coalition_utility
from simulation.fl.messages import aggregation_reply
from simulation.fl.weights import Weights, flatten

__all__ = ["CoalitionReply", "aggregator_utility", "is_weighted_mean"]


@dataclass(frozen=True)
class CoalitionReply:
    """One accepted reply of the round: the client, its weights and example count."""

    client: int
    weights: Weights
    num_examples: int


def is_weighted_mean(strategy: Any) -> bool:
    """Whether ``strategy``'s server step is the example-weighted mean (Flower's own
    FedAvg and FedProx, not a subclass such as DP-FedAvg or FoolsGold)."""
    from flwr.serverapp.strategy import FedAvg, FedProx

    return type(strategy) in (FedAvg, FedProx)


def aggregator_utility(
    strategy: Any,
    minimum: int,
    round_: int,
    global_weights: Weights,
    replies: Sequence[CoalitionReply],
    evaluate: Callable[[np.ndarray], float],
    *,
    cohort: tuple[int, int] | None = None,
) -> Utility:
    """``U(S)`` on clients ``0..len(replies)-1`` (indices into ``replies``).

    ``evaluate`` scores a flat weight vector (ordered as ``global_weights``);
    ``cohort`` is the round's ``(eligible, sampled)`` for client-level DP. For a
    weighted-mean strategy this is :func:`coalition_utility` (the mean in float64),
    otherwise each coalition's replies go to ``strategy.what_if().aggregate_train``.
    """
    keys = list(global_weights)
    base = flatten(global_weights, keys)
    if minimum < 1:
        raise ValueError(f"an aggregator needs at least 1 reply, not {minimum}")
    if is_weighted_mean(strategy):
        deltas = [flatten(r.weights, keys) - base for r in replies]
        return coalition_utility(base, deltas, [r.num_examples for r in replies], evaluate)
    if getattr(strategy, "what_if", None) is None and not _keeps_no_state(strategy):
        raise TypeError(f"{type(strategy).__name__} has no what_if(): its state would change")
    # One snapshot for the round (FLTrust's root update is trained once, in it), and a
    # fresh copy of the snapshot per coalition (FoolsGold's histories grow per call).
    snapshot = strategy.what_if() if hasattr(strategy, "what_if") else strategy
    if snapshot is not strategy:
        from simulation.fl.strategies import Cohort, prepare_round

        prepare_round(snapshot, global_weights, None if cohort is None else Cohort(*cohort))
    if hasattr(snapshot, "aggregate_flat"):
        return _flat_utility(
            snapshot, minimum, base, replies, [flatten(r.weights, keys) for r in replies], evaluate
        )
    messages = [
        _decoded(aggregation_reply(round_, r.client, r.weights, r.num_examples)) for r in replies
    ]
    keep = float(evaluate(base))

    def utility(coalition: frozenset[int]) -> float:
        if len(coalition) < minimum:
            return keep
        fork = snapshot.what_if() if snapshot is not strategy else strategy
        with _quiet_flower():
            arrays, _ = fork.aggregate_train(round_, [messages[i] for i in sorted(coalition)])
        if arrays is None:
            return keep
        out = {k: np.asarray(v.numpy()) for k, v in arrays.items()}
        return float(evaluate(flatten(out, keys)))

    return utility


@contextmanager
def _quiet_flower() -> Iterator[None]:
    """Flower logs every ``aggregate_train`` at INFO; thousands of hypothetical ones
    per round would bury the run's log, so they log warnings and errors only."""
    flwr = logging.getLogger("flwr")
    level = flwr.level
    flwr.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        flwr.setLevel(level)


def _keeps_no_state(strategy: Any) -> bool:
    """Flower's own rules (median, trimmed mean, Krum, Multi-Krum, Bulyan) aggregate
    without keeping anything between calls; FedMarket's own keep state (``NeedsGlobal``)."""
    from simulation.fl.strategies import NeedsGlobal

    return type(strategy).__module__.startswith("flwr.") and not isinstance(strategy, NeedsGlobal)


def _flat_utility(
    snapshot: Any,
    minimum: int,
    base: np.ndarray,
    replies: Sequence[CoalitionReply],
    flats: list[np.ndarray],
    evaluate: Callable[[np.ndarray], float],
) -> Utility:
    """The same utility for a rule that aggregates flat vectors (``aggregate_flat``, as
    FoolsGold's ``aggregate_train`` does after decoding the replies)."""
    keep = float(evaluate(base))
    clients = [r.client for r in replies]
    deltas = [f - base for f in flats]

    def utility(coalition: frozenset[int]) -> float:
        if len(coalition) < minimum:
            return keep
        members = sorted(coalition)
        new = snapshot.what_if().aggregate_flat(
            [clients[i] for i in members], [deltas[i] for i in members], base
        )
        return keep if new is None else float(evaluate(new))

    return utility


def _decoded(message: Any) -> Any:
    """``message`` with each array decoded once: Flower's ``Array.numpy()`` parses the
    serialised bytes on every call, which made most of a hypothetical aggregation's
    cost. The decoded arrays are read-only, so a rule that wrote into them would fail."""
    from flwr.app import Array

    class Decoded(Array):  # type: ignore[misc]
        def numpy(self) -> np.ndarray:
            return self.decoded  # type: ignore[no-any-return]

    for record in message.content.array_records.values():
        for key in list(record.keys()):
            arr = np.asarray(record[key].numpy())
            arr.flags.writeable = False
            wrapped = Decoded(arr)
            wrapped.decoded = arr
            record[key] = wrapped
    return message
