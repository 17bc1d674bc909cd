"""Reply Messages built by the world's own ``aggregation_reply``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, Message

from simulation.fl.messages import aggregation_reply


def reply(round_: int, client: int, weights: Mapping[str, np.ndarray], n: int = 10) -> Message:
    """One train reply from ``client`` (``src_node_id`` = client index)."""
    return aggregation_reply(round_, client, dict(weights), n)  # type: ignore[no-any-return]


def replies(
    round_: int, updates: Mapping[int, Sequence[float]], glob: Sequence[float], key: str = "w"
) -> list[Message]:
    """Replies whose weights are ``glob + update``, sorted by client."""
    g = np.asarray(glob, dtype=np.float64)
    return [
        reply(round_, c, {key: g + np.asarray(u, dtype=np.float64)})
        for c, u in sorted(updates.items())
    ]


def record(values: Sequence[float], key: str = "w") -> ArrayRecord:
    """A one-array global model."""
    return ArrayRecord({key: Array(np.asarray(values, dtype=np.float64))})


def as_numpy(arrays: ArrayRecord | None, key: str = "w") -> np.ndarray:
    """The named array of an aggregation result."""
    assert arrays is not None
    return np.asarray(arrays[key].numpy())
