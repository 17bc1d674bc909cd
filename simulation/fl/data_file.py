"""The federated data of a run as one file, built once and read by every process.

Under ``--engine flower`` the driver has built the federated data before any
engine process starts (``run_dir.prepare_data``); without this file the
ServerApp and every ClientApp actor would build it again from the seed, and
each would first import ``datasets``, ``flwr_datasets`` and scikit-learn to do
so: seconds of CPU per process before round 1, the same bytes every time. The
driver writes the arrays here instead (:func:`save_federated`), and the other
processes read them (:func:`load_federated`): the same arrays bit for bit, so
the run trains identically.

The file is an ``.npz`` without pickles (arrays, and the metadata as JSON
bytes). It records the ``DataSpec`` it was built from, and a reader asking for
another spec is refused. A Hub dataset decodes its rows on demand and is not
written (:func:`shareable`): its processes load their own rows as before.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from simulation.fl.federated import FederatedData, Split

__all__ = ["RUN_CONFIG_KEY", "load_federated", "save_federated", "shareable"]

RUN_CONFIG_KEY = "data"
"""The Flower run config key naming the file (empty: every process builds the data,
as under ``flwr run``)."""


def shareable(data: FederatedData) -> bool:
    """Whether ``data`` is plain arrays (not rows a Hub dataset decodes on demand)."""
    return all(isinstance(r, np.ndarray) for r in (data.x_train, data.val.rows, data.test.rows))


def save_federated(data: FederatedData, spec: str, path: Path) -> Path:
    """Write ``data``, built from the ``DataSpec`` whose JSON is ``spec``, to ``path``."""
    if not shareable(data):
        raise ValueError("a Hub dataset's rows are decoded on demand and not written")
    sizes = np.asarray([len(p) for p in data.partitions], dtype=np.int64)
    meta = {
        "spec": spec,
        "num_classes": data.num_classes,
        "input_shape": list(data.input_shape),
        "class_names": list(data.class_names),
        "source": data.source,
        "client_ids": list(data.client_ids),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(
            f,
            x_train=np.asarray(data.x_train),
            y_train=data.y_train,
            rows=np.concatenate(data.partitions) if data.partitions else np.zeros(0, np.int64),
            sizes=sizes,
            x_val=np.asarray(data.val.rows),
            y_val=data.val.y,
            x_test=np.asarray(data.test.rows),
            y_test=data.test.y,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        )
    return path


def load_federated(path: Path, spec: str) -> FederatedData:
    """The data :func:`save_federated` wrote to ``path``; a ``ValueError`` if it was
    built from another spec than ``spec``."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(f["meta"].tobytes())
        if meta["spec"] != spec:
            raise ValueError(f"{path} holds the data of {meta['spec']}, not of {spec}")
        sizes = f["sizes"]
        rows = f["rows"]
        return FederatedData(
            x_train=f["x_train"],
            y_train=f["y_train"],
            partitions=tuple(np.split(rows, np.cumsum(sizes)[:-1])) if len(sizes) else (),
            val=Split(f["x_val"], f["y_val"]),
            test=Split(f["x_test"], f["y_test"]),
            num_classes=int(meta["num_classes"]),
            input_shape=tuple(int(v) for v in meta["input_shape"]),
            class_names=tuple(meta["class_names"]),
            source=str(meta["source"]),
            client_ids=tuple(meta["client_ids"]),
        )
