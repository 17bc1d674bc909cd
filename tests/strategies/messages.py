"""Reply Messages built exactly as ``World._aggregate`` builds them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict


def reply(round_: int, client: int, weights: Mapping[str, np.ndarray], n: int = 10) -> Message:
    """One train reply from ``client`` (``src_node_id`` = client index)."""
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()}),
            "metrics": MetricRecord({"num-examples": int(n)}),
        }
    )
    meta = Metadata(
        run_id=0,
        message_id=f"{round_}:{client}",
        src_node_id=client,
        dst_node_id=0,
        reply_to_message_id="",
        group_id=str(round_),
        created_at=0.0,
        ttl=3600.0,
        message_type="train",
    )
    return Message(content=content, metadata=meta)


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
