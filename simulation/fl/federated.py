"""The federated data of a run: client shards and the server's splits, as arrays or as
rows decoded on demand (a Hub dataset). Built by :mod:`simulation.fl.data`."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np

__all__ = ["FederatedData", "Rows", "Split"]


class Rows(Protocol):
    """Model inputs by row number: a numpy array, or a Hub split decoded on demand."""

    def __getitem__(self, index: np.ndarray) -> np.ndarray: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class Split:
    """A server-side split: its inputs (decoded when first asked for) and labels."""

    rows: Rows
    y: np.ndarray

    def x(self) -> np.ndarray:
        """Every input of the split as one array."""
        if isinstance(self.rows, np.ndarray):
            return self.rows
        return self.rows[np.arange(len(self.y))]


@dataclass(frozen=True)
class FederatedData:
    """Everything a run needs: client shards (as row numbers into ``x_train`` and
    ``y_train``) and the server's validation and test splits.

    ``x_train`` of a Hub dataset decodes only the rows asked for, so a client
    process never decodes anyone else's data; ``x_val``/``x_test`` are decoded
    on first use (the server's, never a client's).
    """

    x_train: Rows
    y_train: np.ndarray
    partitions: tuple[np.ndarray, ...]
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...] = ()
    source: str = "bundled"
    client_ids: tuple[str, ...] = field(default=())

    @cached_property
    def x_val(self) -> np.ndarray:
        """Inputs of the validation split (contribution scoring, FLTrust's root set)."""
        return self.val.x()

    @property
    def y_val(self) -> np.ndarray:
        """Labels of the validation split."""
        return self.val.y

    @cached_property
    def x_test(self) -> np.ndarray:
        """Inputs of the test split (global accuracy)."""
        return self.test.x()

    @property
    def y_test(self) -> np.ndarray:
        """Labels of the test split."""
        return self.test.y

    def client(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``(x, y)`` arrays of client ``index``."""
        idx = self.partitions[index]
        return self.x_train[idx], self.y_train[idx]

    def sizes(self) -> list[int]:
        """Number of training examples per client."""
        return [len(p) for p in self.partitions]

    def label_counts(self) -> np.ndarray:
        """``(clients, classes)`` training examples per client and label: the skew the
        partition produced, stored with the run so ``fedmarket plot`` needs no data."""
        k, sizes = self.num_classes, [len(p) for p in self.partitions]
        rows = np.concatenate(self.partitions) if sizes else np.zeros(0, dtype=np.int64)
        labels = self.y_train[rows].astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"training labels outside 0..{k - 1}")
        # One bincount over (client, label) cells: the same counts as one bincount
        # per client, without a Python loop over 100,000 clients.
        owner = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        return np.bincount(owner * k + labels, minlength=len(sizes) * k).reshape(len(sizes), k)

    def summary(self) -> dict[str, Any]:
        """What the manifest records about the data (JSON-able)."""
        return {
            "source": self.source,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "examples": {
                "train": int(sum(self.sizes())),
                "validation": len(self.val.y),
                "test": len(self.test.y),
            },
            "client_ids": list(self.client_ids),
        }
