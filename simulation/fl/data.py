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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset
from sklearn.model_selection import train_test_split
from sklearn.model_selection._split import _validate_shuffle_split
from sklearn.utils.extmath import _approximate_mode

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


RowLaw = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]
"""Draws ``n`` fresh ``(x, y)`` rows from a generated dataset's law with ``rng``."""


@dataclass(frozen=True)
class RawData:
    """A whole dataset before splitting. ``groups`` holds natural client ids, if any;
    ``law`` draws fresh rows from the law the rows came from, where there is one law
    for every row (Synthetic-IID): a fixed-size server held-out set is drawn with it."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    groups: np.ndarray | None = None
    law: RowLaw | None = None


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
    if cfg.iid:
        return _synthetic_iid(sizes, scale, w_shared, b_shared, rng)
    for k in range(num_clients):
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


_IID_BLOCK = 2048  # clients per draw: ~7 MB of normals at 60 features, 50 rows each


def _synthetic_iid(
    sizes: np.ndarray,
    scale: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
) -> RawData:
    """Synthetic-IID's rows, drawn in blocks of clients instead of one client at a time.

    The Generator fills an array from its stream in order with no buffered state,
    so one ``standard_normal`` of a block's rows is the same numbers as one call
    per client; labels are ``argmax`` per row, so the block's product gives each
    row the value its client's did (tests/simulation/test_scale.py checks the bytes
    against the per-client loop). 100,000 clients: seconds, not a Python loop.
    """
    c, d = w.shape
    x = np.empty((int(sizes.sum()), d), dtype=np.float32)
    y = np.empty(len(x), dtype=np.int64)
    blocks = [int(sizes[lo : lo + _IID_BLOCK].sum()) for lo in range(0, len(sizes), _IID_BLOCK)]
    # One buffer filled in place (``out=`` fills from the stream in the same order):
    # no fresh 55 MB arrays per block to page-fault in. ``+= 0.0`` keeps v + σ·z with
    # v = 0 exactly, which turns a -0.0 draw into 0.0 as ``0 + σz`` does.
    buffer = np.empty((max(blocks, default=0), d))
    row = 0
    for n in blocks:
        block = buffer[:n]
        rng.standard_normal(out=block)
        y[row : row + n] = _label_iid(block, scale, w, b)
        x[row : row + n] = block
        row += n
    groups = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    return RawData(x, y, c, (d,), groups, functools.partial(_iid_rows, scale, w, b))


def _label_iid(z: np.ndarray, scale: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Turn standard-normal draws ``z`` into Synthetic-IID inputs in place (x = 0 + σz in
    float64) and return their labels ``argmax(Wx + b)``, computed before any cast."""
    z *= scale
    z += 0.0
    labels: np.ndarray = np.argmax(z @ w.T + b, axis=1)
    return labels


def _iid_rows(
    scale: np.ndarray, w: np.ndarray, b: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fresh Synthetic-IID rows, computed as a client's are
    (:func:`_label_iid`): the server's own held-out rows."""
    x = rng.standard_normal((n, len(scale)))
    y = _label_iid(x, scale, w, b).astype(np.int64)
    return x.astype(np.float32), y


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
    ids, _, counts, order = strata_members(groups)
    rows = np.split(order.astype(np.int64), np.cumsum(counts)[:-1])
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
    if dataset.test_rows is None:
        x, train, val, test = _fractions_held_out(dataset, raw, tree)
    else:
        x, train, val, test = _server_held_out(dataset, raw, tree)
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
    # np.take gathers rows several times faster than x[train] (the same rows).
    data = FederatedData(
        x_train=np.take(x, train, axis=0),
        y_train=raw.y[train],
        partitions=parts,
        val=val,
        test=test,
        num_classes=raw.num_classes,
        input_shape=raw.input_shape,
        class_names=info.class_names or tuple(str(i) for i in range(raw.num_classes)),
        source="generated" if dataset.name == "synthetic" else "bundled",
    )
    log.debug(
        "dataset %s: %d train / %d val / %d test, client sizes %s",
        dataset.name,
        len(train),
        len(val.y),
        len(test.y),
        data.sizes(),
    )
    return data


HeldOut = tuple[np.ndarray, np.ndarray, Split, Split]
"""``(features, the clients' rows in shuffled order, validation split, test split)``."""


def _fractions_held_out(dataset: DatasetConfig, raw: RawData, tree: SeedTree) -> HeldOut:
    """``test_fraction`` and ``validation_fraction`` of all rows, stratified by natural
    id (else label); the clients share the rest."""
    assert dataset.test_fraction is not None and dataset.validation_fraction is not None
    idx = np.arange(len(raw.y))
    strat = raw.groups if raw.groups is not None else raw.y
    rest, test = split_off(idx, dataset.test_fraction, tree.integer("test") % (2**32), strat)
    val = np.array([], dtype=np.int64)
    if dataset.validation_fraction > 0:
        frac = dataset.validation_fraction / (1.0 - dataset.test_fraction)
        rest, val = split_off(rest, frac, tree.integer("validation") % (2**32), strat[rest])
    # IidPartitioner shards contiguously: shuffle the training rows first.
    train = tree.numpy("shuffle").permutation(np.sort(rest))
    x = raw.x
    if dataset.name == "breast_cancer":
        mean = x[train].mean(axis=0)
        std = x[train].std(axis=0) + 1e-8
        x = ((x - mean) / std).astype(np.float32)
    val, test = np.sort(val), np.sort(test)
    return (
        x,
        train,
        Split(np.take(x, val, axis=0), raw.y[val]),
        Split(np.take(x, test, axis=0), raw.y[test]),
    )


def _server_held_out(dataset: DatasetConfig, raw: RawData, tree: SeedTree) -> HeldOut:
    """``test_rows`` and ``validation_rows`` fresh rows from the data's law, each split
    from its own seed-tree child; every generated row stays with its client."""
    assert dataset.test_rows is not None and dataset.validation_rows is not None
    if raw.law is None:  # the schema admits test_rows only where there is one law
        raise ValueError(f"dataset.test_rows: {dataset.name} has no law to draw fresh rows from")
    train = tree.numpy("shuffle").permutation(len(raw.y))
    val = Split(*raw.law(dataset.validation_rows, tree.numpy("server-validation")))
    test = Split(*raw.law(dataset.test_rows, tree.numpy("server-test")))
    return raw.x, train, val, test


def split_off(
    idx: np.ndarray, fraction: float, seed: int, strata: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``train_test_split(idx, test_size=fraction, random_state=seed, stratify=...)``:
    stratified by ``strata`` when every stratum can give a row, else a plain shuffle.

    The stratified case returns scikit-learn's rows in scikit-learn's order
    (tests/simulation/test_scale.py compares the two), from the same
    ``RandomState`` calls in the same order, but gathers the strata's slices
    with whole-array operations: scikit-learn extends a list one numpy scalar at
    a time, which is most of 20 s for 100,000 natural-id strata.
    """
    if not _can_stratify(strata, fraction):
        rest, test = train_test_split(idx, test_size=fraction, random_state=seed)
        return rest, test
    n_train, n_test = _validate_shuffle_split(len(idx), fraction, None, default_test_size=0.25)
    _, _, counts, order = strata_members(strata)
    if n_train < len(counts) or n_test < len(counts):
        # scikit-learn's own error for this case
        return train_test_split(idx, test_size=fraction, random_state=seed, stratify=strata)  # type: ignore[no-any-return]
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    # scikit-learn permutes each stratum's rows and takes the first n_i for training and
    # the next t_i for testing. The permutations come from the RNG one stratum at a time
    # (their draws are rejection-sampled, so they stay a loop); the rest is one gather:
    # ``order`` lists the strata's rows stratum by stratum, ``start`` is where each
    # row's stratum begins in it, and a row's rank is its place in its permuted stratum.
    start = np.repeat(np.cumsum(counts) - counts, counts)
    perms = np.concatenate([rng.permutation(count) for count in counts.tolist()])
    shuffled = order[perms + start]
    rank = np.arange(len(order)) - start
    n_rank = np.repeat(n_i, counts)
    train = rng.permutation(shuffled[rank < n_rank])
    test = rng.permutation(shuffled[(rank >= n_rank) & (rank < n_rank + np.repeat(t_i, counts))])
    return idx[train], idx[test]


def _can_stratify(labels: np.ndarray, fraction: float) -> bool:
    counts = _unique(labels)[2]
    return bool(counts.min() >= 2 and fraction * len(labels) >= len(counts))


def strata_members(
    strata: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(strata, return_inverse=True, return_counts=True)`` and the rows of each
    stratum in order, ``np.argsort(inverse, kind="stable")``, in O(rows) for integer ids.

    Both are sorts of millions of rows at 100,000 natural-id strata (seconds each,
    twice per split); ids are counted instead, and the stable order is numpy's radix
    sort on 16-bit digits, low digit first (a stable sort by the high digit of rows
    already stably sorted by the low one is the stable sort by the whole id).
    """
    ids, inverse, counts = _unique(strata)
    if len(ids) <= 1 << 16:
        return ids, inverse, counts, np.argsort(inverse.astype(np.uint16), kind="stable")
    low = np.argsort((inverse & 0xFFFF).astype(np.uint16), kind="stable")
    high = np.argsort((inverse[low] >> 16).astype(np.uint16), kind="stable")
    return ids, inverse, counts, low[high]


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True, return_counts=True)``, by counting when
    ``values`` are non-negative integers no larger than a few times their number."""
    if (
        values.ndim != 1
        or not len(values)
        or not np.can_cast(values.dtype, np.intp)
        or values.min() < 0
        or values.max() > 4 * len(values) + 1024
    ):
        ids, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        return ids, inverse.astype(np.intp), counts
    present = np.bincount(values)
    ids = np.flatnonzero(present)
    code = np.cumsum(present > 0, dtype=np.intp) - 1
    return ids.astype(values.dtype), code[values], present[ids].astype(np.int64)
