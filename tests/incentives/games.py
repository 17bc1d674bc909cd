"""Cooperative games shared by the contribution tests and ``benchmarks/shapley.py``."""

from __future__ import annotations

import math

from marketplace.contribution import Utility

#: (examples, label-noise rate) per client. Client 6 has mostly wrong labels and
#: drags the aggregate down; client 7 holds an exact copy of client 2's data.
CLIENTS: tuple[tuple[int, float], ...] = (
    (800, 0.0),
    (500, 0.0),
    (350, 0.0),
    (200, 0.0),
    (120, 0.0),
    (60, 0.0),
    (300, 0.9),
    (350, 0.0),
)
DUPLICATE_OF = {7: 2}


def saturating_accuracy(num_clients: int = 8, *, scale: float = 200.0) -> Utility:
    """Accuracy-like, non-additive utility on the first ``num_clients`` clients.

    ``acc(S) = 0.1 + 0.8 · (1 - exp(-clean(S)/scale)) · (1 - 0.3 · noisy_fraction(S))``:
    diminishing returns in clean examples (a few good clients already give a
    good aggregate), a penalty proportional to the share of mislabelled data,
    duplicates counted once, and ``U(∅) = 0.1`` (chance level / previous model).
    Clients beyond the eight listed repeat the list with smaller sizes.
    """
    clients = [
        (
            max(1, CLIENTS[i % len(CLIENTS)][0] // (1 + i // len(CLIENTS))),
            CLIENTS[i % len(CLIENTS)][1],
        )
        for i in range(num_clients)
    ]

    def utility(coalition: frozenset[int]) -> float:
        distinct = {DUPLICATE_OF.get(i, i) for i in coalition}
        clean = sum(clients[i][0] * (1 - clients[i][1]) for i in distinct)
        noisy = sum(clients[i][0] * clients[i][1] for i in distinct)
        total = clean + noisy
        if total == 0:
            return 0.1
        return 0.1 + 0.8 * (1 - math.exp(-clean / scale)) * (1 - 0.3 * noisy / total)

    return utility
