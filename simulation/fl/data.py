"""Datasets and client partitions, never a download.

Two kinds of dataset. Bundled or generated ones (``digits``, ``breast_cancer``,
``synthetic``) are registry entries returning in-memory arrays, partitioned
with flwr-datasets' partitioners over an in-memory ``datasets.Dataset``. The
Hub benchmarks (``mnist``, ``fashion_mnist``, ``cifar10``, ``femnist``,
``shakespeare``) load through ``flwr_datasets.FederatedDataset`` from local
files only (``simulation.fl.hub_data``). Either way the server keeps a held-out
test split (global accuracy) and a validation split (contribution scoring),
and the rest is partitioned across clients. Server and ClientApp build the
same ``FederatedData`` from the same spec and seed, so the ClientApp stays
stateless: a message tells it which partition it holds.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset
from sklearn.model_selection import train_test_split

from simulation.config.catalog import facts
from simulation.config.schema import (
    DatasetConfig,
    HubDatasetConfig,
    Partition,
    SyntheticConfig,
)
from simulation.fl.federated import FederatedData, Split
from simulation.fl.partitions import (
    PartitionContext,
    chosen_partitions,
    make_partitioner,
    partition_rows,
)
from simulation.fl.partitions import PartitionError as PartitionError
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
    scale = np.sqrt(sigma)
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
        # v + σ·z is what ``rng.normal(v, σ, shape)`` computes from the same draws,
        # without its slow broadcasting path (the same bytes, 100,000 clients in seconds).
        x = v + scale * rng.standard_normal((int(sizes[k]), d))
        y = np.argmax(x @ w.T + b, axis=1)
        xs.append(x.astype(np.float32))
        ys.append(y)
        gs.append(np.full(len(y), k, dtype=np.int64))
    return RawData(
        np.concatenate(xs),
        np.concatenate(ys).astype(np.int64),
        c,
        (d,),
        np.concatenate(gs),
    )


@DATASETS.decorator("synthetic")
def _synthetic(cfg: DatasetConfig, num_clients: int, rng: np.random.Generator) -> RawData:
    return synthetic_fedprox(cfg.synthetic, num_clients, rng)


def partition_indices(
    y: np.ndarray,
    spec: Partition,
    num_clients: int,
    seed: int,
    groups: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, ...]:
    """Split row indices ``0..len(y)-1`` into one array per client with flwr-datasets.

    The partitioner sees an in-memory ``datasets.Dataset`` with an ``idx``
    column, so its output maps back to rows without copying features.
    """
    if spec.kind == "natural" and groups is not None:
        return natural_partitions(groups, spec, num_clients, seed, rng)
    columns: dict[str, Any] = {"idx": np.arange(len(y)), "label": y}
    if groups is not None:
        columns["group"] = groups
    ctx = PartitionContext(
        num_clients=num_clients,
        seed=seed % (2**32),
        rows=len(y),
        labels=len(np.unique(y)),
        rng=rng if rng is not None else np.random.default_rng(seed),
        group="group" if groups is not None else None,
    )
    partitioner = make_partitioner(spec, ctx)
    partitioner.dataset = Dataset.from_dict(columns)
    return partition_rows(partitioner, spec, ctx)


def natural_partitions(
    groups: np.ndarray,
    spec: Partition,
    num_clients: int,
    seed: int,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, ...]:
    """The ``natural`` partition of in-memory rows, computed with numpy in O(rows log rows).

    The same partitions as flwr-datasets' ``NaturalIdPartitioner`` (partition ``i``
    holds the rows of the ``i``-th smallest id), chosen by :func:`partition_rows`'s
    rule, without its per-row Python loop and one ``Dataset.select`` per client
    (minutes at 10,000 clients; tests/simulation/test_scale.py checks the two agree).
    """
    ids, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(ids)))[:-1]
    rows = np.split(order.astype(np.int64), bounds)
    ctx = PartitionContext(
        num_clients=num_clients,
        seed=seed % (2**32),
        rows=len(groups),
        labels=0,
        rng=rng if rng is not None else np.random.default_rng(seed),
    )
    chosen = chosen_partitions(len(ids), spec, ctx)
    return tuple(rows[i] for i in chosen)


def build_federated_data(
    dataset: DatasetConfig | HubDatasetConfig, partition: Partition, num_clients: int, seed: int
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

    from simulation.config.schema import Dataset as AnyDataset

    spec = json.loads(key)
    dataset = TypeAdapter(AnyDataset).validate_python(spec["dataset"])
    partition: Partition = TypeAdapter(Partition).validate_python(spec["partition"])
    num_clients: int = spec["clients"]
    tree = SeedTree(spec["seed"]).child("data")
    if isinstance(dataset, HubDatasetConfig):
        from simulation.fl.hub_data import build_hub_data

        return build_hub_data(dataset, partition, num_clients, tree)
    return _build_bundled(dataset, partition, num_clients, tree)


def _build_bundled(
    dataset: DatasetConfig, partition: Partition, num_clients: int, tree: SeedTree
) -> FederatedData:
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
        raw.y[train],
        partition,
        num_clients,
        tree.integer("partition"),
        groups,
        rng=tree.numpy("partition-draws"),
    )
    if partition.kind == "natural" and raw.groups is not None:
        # NaturalIdPartitioner orders partitions by first appearance; order them by id.
        parts = tuple(
            sorted(parts, key=lambda p: int(groups[p[0]]) if len(p) else 1 << 62)  # type: ignore[index]
        )
    info = facts(dataset.name)
    data = FederatedData(
        x_train=x[train],
        y_train=raw.y[train],
        partitions=parts,
        val=Split(x[np.sort(val)], raw.y[np.sort(val)]),
        test=Split(x[np.sort(test)], raw.y[np.sort(test)]),
        num_classes=raw.num_classes,
        input_shape=raw.input_shape,
        class_names=info.class_names or tuple(str(i) for i in range(raw.num_classes)),
        source="generated" if dataset.name == "synthetic" else "bundled",
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
