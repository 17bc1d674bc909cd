"""Datasets and client partitions: only bundled or generated data, never a download.

Each dataset is a registry entry returning in-memory arrays. The server keeps a
held-out test split (global accuracy) and a validation split (contribution
scoring); the rest is partitioned across clients with flwr-datasets'
partitioners over an in-memory ``datasets.Dataset``. Server and ClientApp build
the same ``FederatedData`` from the same spec and seed, so the ClientApp stays
stateless: a message tells it which partition it holds.
"""

from __future__ import annotations

import functools
import json
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset
from flwr_datasets.partitioner import (
    DirichletPartitioner,
    IidPartitioner,
    NaturalIdPartitioner,
    Partitioner,
    PathologicalPartitioner,
)
from sklearn.model_selection import train_test_split

from simulation.config.schema import DatasetConfig, Partition, SyntheticConfig
from simulation.registry import Registry
from simulation.rng import SeedTree

log = logging.getLogger("fedmarket.data")


@dataclass(frozen=True)
class RawData:
    """A whole dataset before splitting. ``groups`` holds natural client ids, if any."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    groups: np.ndarray | None = None


@dataclass(frozen=True)
class FederatedData:
    """Everything a run needs: client shards (as indices into the train arrays) and
    the server's validation and test splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    partitions: tuple[np.ndarray, ...]
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]

    def client(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``(x, y)`` arrays of client ``index``."""
        idx = self.partitions[index]
        return self.x_train[idx], self.y_train[idx]

    def sizes(self) -> list[int]:
        """Number of training examples per client."""
        return [len(p) for p in self.partitions]


DATASETS: Registry[Any] = Registry("dataset")


@DATASETS.decorator("digits")
def _digits(cfg: DatasetConfig, num_clients: int, rng: np.random.Generator) -> RawData:
    """scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes), scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    return RawData(x, bunch.target.astype(np.int64), 10, (1, 8, 8))


@DATASETS.decorator("breast_cancer")
def _breast_cancer(cfg: DatasetConfig, num_clients: int, rng: np.random.Generator) -> RawData:
    """Wisconsin breast cancer (569 × 30, binary). Standardised after splitting."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return RawData(bunch.data.astype(np.float32), bunch.target.astype(np.int64), 2, (30,))


def synthetic_fedprox(cfg: SyntheticConfig, num_clients: int, rng: np.random.Generator) -> RawData:
    """FedProx's ``Synthetic(α, β)`` (Li et al. 2020, §5.1), one group per client.

    For client k: u_k ~ N(0, α), B_k ~ N(0, β); W_k ~ N(u_k, 1), b_k ~ N(u_k, 1);
    v_k ~ N(B_k, 1); x ~ N(v_k, Σ) with Σ_jj = j^-1.2; y = argmax(W_k x + b_k).
    Client sizes are lognormal around ``samples_per_client``. ``iid`` uses one
    W, b ~ N(0, 1) and v = 0 for everyone (Synthetic-IID).
    """
    d, c = cfg.dim, cfg.num_classes
    sigma = np.power(np.arange(1, d + 1, dtype=np.float64), -1.2)
    sizes = rng.lognormal(np.log(cfg.samples_per_client), 0.5, size=num_clients)
    sizes = np.maximum(sizes.astype(np.int64), 10)
    xs, ys, gs = [], [], []
    w_shared = rng.normal(0.0, 1.0, (c, d))
    b_shared = rng.normal(0.0, 1.0, c)
    for k in range(num_clients):
        if cfg.iid:
            w, b, v = w_shared, b_shared, np.zeros(d)
        else:
            u = rng.normal(0.0, np.sqrt(cfg.alpha))
            big_b = rng.normal(0.0, np.sqrt(cfg.beta))
            w = rng.normal(u, 1.0, (c, d))
            b = rng.normal(u, 1.0, c)
            v = rng.normal(big_b, 1.0, d)
        x = rng.normal(v, np.sqrt(sigma), (int(sizes[k]), d))
        y = np.argmax(x @ w.T + b, axis=1)
        xs.append(x)
        ys.append(y)
        gs.append(np.full(len(y), k, dtype=np.int64))
    return RawData(
        np.concatenate(xs).astype(np.float32),
        np.concatenate(ys).astype(np.int64),
        c,
        (d,),
        np.concatenate(gs),
    )


@DATASETS.decorator("synthetic")
def _synthetic(cfg: DatasetConfig, num_clients: int, rng: np.random.Generator) -> RawData:
    return synthetic_fedprox(cfg.synthetic, num_clients, rng)


def _make_partitioner(spec: Partition, num_clients: int, seed: int) -> Partitioner:
    if spec.kind == "iid":
        return IidPartitioner(num_partitions=num_clients)
    if spec.kind == "dirichlet":
        return DirichletPartitioner(
            num_partitions=num_clients,
            partition_by="label",
            alpha=spec.alpha,
            min_partition_size=spec.min_partition_size,
            self_balancing=False,
            shuffle=True,
            seed=seed,
        )
    if spec.kind == "pathological":
        return PathologicalPartitioner(
            num_partitions=num_clients,
            partition_by="label",
            num_classes_per_partition=spec.classes_per_client,
            class_assignment_mode="random",
            shuffle=True,
            seed=seed,
        )
    return NaturalIdPartitioner(partition_by="group")


class PartitionError(ValueError):
    """Raised when a partition spec cannot be met (e.g. Dirichlet minimum size)."""


def partition_indices(
    y: np.ndarray,
    spec: Partition,
    num_clients: int,
    seed: int,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Split row indices ``0..len(y)-1`` into one array per client with flwr-datasets.

    The partitioner sees an in-memory ``datasets.Dataset`` with an ``idx``
    column, so its output maps back to rows without copying features.
    """
    columns: dict[str, Any] = {"idx": np.arange(len(y)), "label": y}
    if groups is not None:
        columns["group"] = groups
    ds = Dataset.from_dict(columns)
    partitioner = _make_partitioner(spec, num_clients, seed % (2**32))
    partitioner.dataset = ds
    try:
        with warnings.catch_warnings():
            # flwr-datasets warns on every Dirichlet re-draw; failure is reported below.
            warnings.simplefilter("ignore", UserWarning)
            made = partitioner.num_partitions
            out = tuple(
                np.sort(np.asarray(partitioner.load_partition(i)["idx"], dtype=np.int64))
                for i in range(num_clients)
            )
    except ValueError as exc:
        raise PartitionError(f"{spec.kind} partition cannot be met: {exc}") from exc
    if made != num_clients:
        raise PartitionError(f"the partitioner made {made} partitions, expected {num_clients}")
    return out


def build_federated_data(
    dataset: DatasetConfig, partition: Partition, num_clients: int, seed: int
) -> FederatedData:
    """Generate or load the dataset, split it, and partition the training part."""
    key = json.dumps(
        {
            "dataset": dataset.model_dump(mode="json"),
            "partition": partition.model_dump(mode="json"),
            "clients": num_clients,
            "seed": seed,
        },
        sort_keys=True,
    )
    return _build_cached(key)


@functools.lru_cache(maxsize=4)
def _build_cached(key: str) -> FederatedData:
    from pydantic import TypeAdapter

    spec = json.loads(key)
    dataset = DatasetConfig.model_validate(spec["dataset"])
    partition: Partition = TypeAdapter(Partition).validate_python(spec["partition"])
    num_clients: int = spec["clients"]
    tree = SeedTree(spec["seed"]).child("data")

    raw: RawData = DATASETS.get(dataset.name)(dataset, num_clients, tree.numpy("generate"))
    n = len(raw.y)
    idx = np.arange(n)
    strat = raw.groups if raw.groups is not None else raw.y
    rest, test = train_test_split(
        idx,
        test_size=dataset.test_fraction,
        random_state=tree.integer("test") % (2**32),
        stratify=strat if _can_stratify(strat, dataset.test_fraction) else None,
    )
    val = np.array([], dtype=np.int64)
    if dataset.validation_fraction > 0:
        frac = dataset.validation_fraction / (1.0 - dataset.test_fraction)
        rest, val = train_test_split(
            rest,
            test_size=frac,
            random_state=tree.integer("validation") % (2**32),
            stratify=strat[rest] if _can_stratify(strat[rest], frac) else None,
        )
    # IidPartitioner shards contiguously: shuffle the training rows first.
    train = tree.numpy("shuffle").permutation(np.sort(rest))
    x = raw.x
    if dataset.name == "breast_cancer":
        mean = x[train].mean(axis=0)
        std = x[train].std(axis=0) + 1e-8
        x = ((x - mean) / std).astype(np.float32)
    groups = raw.groups[train] if raw.groups is not None else None
    parts = partition_indices(
        raw.y[train], partition, num_clients, tree.integer("partition"), groups
    )
    if partition.kind == "natural" and raw.groups is not None:
        # NaturalIdPartitioner orders partitions by first appearance; order them by id.
        parts = tuple(
            sorted(parts, key=lambda p: int(groups[p[0]]) if len(p) else 1 << 62)  # type: ignore[index]
        )
    data = FederatedData(
        x_train=x[train],
        y_train=raw.y[train],
        partitions=parts,
        x_val=x[np.sort(val)],
        y_val=raw.y[np.sort(val)],
        x_test=x[np.sort(test)],
        y_test=raw.y[np.sort(test)],
        num_classes=raw.num_classes,
        input_shape=raw.input_shape,
    )
    log.debug(
        "dataset %s: %d train / %d val / %d test, client sizes %s",
        dataset.name,
        len(train),
        len(val),
        len(test),
        data.sizes(),
    )
    return data


def _can_stratify(labels: np.ndarray, fraction: float) -> bool:
    _, counts = np.unique(labels, return_counts=True)
    return bool(counts.min() >= 2 and fraction * len(labels) >= len(counts))
