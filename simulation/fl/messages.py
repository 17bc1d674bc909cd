"""What travels between the server and a client, typed on both ends.

A train reply's ``MetricRecord`` carries :class:`ReplyMetrics`; the server
parses it back with :meth:`ReplyMetrics.from_record`, which rejects a reply
whose metrics are missing or not numbers instead of crashing the round. The
same class is built by the Flower ClientApp and by the in-process loop, so the
two engines cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

QUERY_DP_SGD = "dp-sgd"
"""Query config key: ``True`` when the run trains with DP-SGD, so the ClientApp
imports Opacus while it waits for its first task rather than during round 1."""

if TYPE_CHECKING:
    from simulation.fl.training import TrainResult

__all__ = ["ReplyMetrics", "aggregation_reply"]

Weights = dict[str, np.ndarray]

# Flower metric keys of a train reply.
NUM_EXAMPLES = "num-examples"
STEPS = "steps"
SAMPLE_RATE = "sample-rate"
TRAIN_LOSS = "train-loss"
TRAIN_ACCURACY = "train-accuracy"
SECONDS = "seconds"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ReplyMetrics:
    """The facts a client reports with its weights.

    ``num_examples`` is FedAvg's weight; ``steps`` and ``sample_rate`` are what the
    server's privacy accountant composes; ``train_loss``/``train_accuracy`` are
    ``None`` when the client did not train (or its loss was not finite);
    ``seconds`` is the client's wall time (diagnostics only, never signed).
    """

    num_examples: int
    steps: int = 0
    sample_rate: float = 0.0
    train_loss: float | None = None
    train_accuracy: float | None = None
    seconds: float = 0.0

    @classmethod
    def from_train_result(cls, result: TrainResult) -> ReplyMetrics:
        return cls(
            num_examples=int(result.num_examples),
            steps=int(result.steps),
            sample_rate=float(result.sample_rate),
            train_loss=_finite(result.train_loss),
            train_accuracy=_finite(result.train_accuracy),
            seconds=float(result.seconds),
        )

    def ledger_metrics(self) -> dict[str, float]:
        """The local metrics a contribution entry signs: a metric the client could
        not compute (it did not train) is left out, so the ledger never holds a
        stand-in number that reads like a real one."""
        local = {TRAIN_LOSS: self.train_loss, TRAIN_ACCURACY: self.train_accuracy}
        return {k: v for k, v in local.items() if v is not None}

    def to_record(self) -> dict[str, int | float]:
        """The ``MetricRecord`` content (a metric that is ``None`` is left out)."""
        out: dict[str, int | float] = {
            NUM_EXAMPLES: self.num_examples,
            STEPS: self.steps,
            SAMPLE_RATE: self.sample_rate,
            SECONDS: self.seconds,
        }
        if self.train_loss is not None:
            out[TRAIN_LOSS] = self.train_loss
        if self.train_accuracy is not None:
            out[TRAIN_ACCURACY] = self.train_accuracy
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ReplyMetrics:
        """Parse a reply's metrics; raise ``ValueError`` naming the bad key."""

        def number(key: str, *, required: bool) -> float | None:
            if key not in record:
                if required:
                    raise ValueError(f"reply metrics lack {key!r}")
                return None
            value = record[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"reply metric {key!r} is not a number")
            return float(value)

        examples = number(NUM_EXAMPLES, required=True)
        assert examples is not None
        if examples < 0 or examples != int(examples):
            raise ValueError(f"reply metric {NUM_EXAMPLES!r} is not a count")
        loss = number(TRAIN_LOSS, required=False)
        acc = number(TRAIN_ACCURACY, required=False)
        return cls(
            num_examples=int(examples),
            steps=int(number(STEPS, required=False) or 0),
            sample_rate=float(number(SAMPLE_RATE, required=False) or 0.0),
            train_loss=_finite(loss) if loss is not None else None,
            train_accuracy=_finite(acc) if acc is not None else None,
            seconds=float(number(SECONDS, required=False) or 0.0),
        )


def aggregation_reply(round_: int, client: int, weights: Weights, num_examples: int) -> Any:
    """A train reply as a Flower strategy's ``aggregate_train`` expects it.

    Replies are rebuilt after the server's checks (and, on either engine, after
    coalition attacks rewrote them), so the metadata is explicit: ``src_node_id``
    is the client index, never a Flower node id.
    """
    from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict

    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()}),
            "metrics": MetricRecord({NUM_EXAMPLES: int(num_examples)}),
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
