"""One participant's own training data, as a file on its own host.

On Flower's Deployment Engine each SuperNode is a participant that holds its
own data and nothing else. ``fedmarket run --engine deployment`` (and
``fedmarket deploy supernode`` on another host) cuts the scenario's federated
data with the same seed as every other engine, keeps one partition, and writes
it here; the SuperNode's ClientApp trains on this file alone (its node config
``data-path``) instead of rebuilding the whole federated dataset. The rows are
the same ones ``FederatedData.client(i)`` gives, so the run trains identically.

An ``.npz`` without pickles: arrays and four integers, nothing executable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulation.fl.federated import FederatedData

__all__ = ["OwnPartition"]


@dataclass(frozen=True)
class OwnPartition:
    """The rows of one partition and the shape facts a model is built from."""

    partition_id: int
    num_partitions: int
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]

    @classmethod
    def of(cls, data: FederatedData, partition_id: int) -> OwnPartition:
        """Partition ``partition_id`` of ``data``: what that participant holds."""
        if not 0 <= partition_id < len(data.partitions):
            raise ValueError(f"partition-id {partition_id} is not in 0..{len(data.partitions) - 1}")
        x, y = data.client(partition_id)
        return cls(
            partition_id,
            len(data.partitions),
            np.ascontiguousarray(x),
            np.ascontiguousarray(y),
            data.num_classes,
            tuple(data.input_shape),
        )

    def save(self, path: Path) -> Path:
        """Write it to ``path`` (an ``.npz``); the path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez(
                f,
                x=self.x,
                y=self.y,
                meta=np.asarray(
                    [self.partition_id, self.num_partitions, self.num_classes], dtype=np.int64
                ),
                input_shape=np.asarray(self.input_shape, dtype=np.int64),
            )
        return path

    @classmethod
    def load(cls, path: Path) -> OwnPartition:
        """Read a file written by :meth:`save` (no pickles are loaded)."""
        with np.load(path, allow_pickle=False) as f:
            pid, parts, classes = (int(v) for v in f["meta"])
            shape = tuple(int(v) for v in f["input_shape"])
            return cls(pid, parts, f["x"], f["y"], classes, shape)
