"""Datasets and partitions (flwr-datasets partitioners over in-memory data)."""

from __future__ import annotations

import numpy as np
import pytest

from simulation.config.schema import (
    DatasetConfig,
    DirichletPartition,
    IidPartition,
    NaturalPartition,
    PathologicalPartition,
    SyntheticConfig,
)
from simulation.fl.data import build_federated_data, synthetic_fedprox


def covers_train_exactly(data) -> None:  # type: ignore[no-untyped-def]
    allidx = np.concatenate(data.partitions)
    assert len(allidx) == len(np.unique(allidx)), "partitions overlap"
    assert sorted(allidx.tolist()) == list(range(len(data.y_train)))


def test_digits_iid_split_sizes_and_disjointness() -> None:
    d = build_federated_data(DatasetConfig(name="digits"), IidPartition(), 10, seed=0)
    assert len(d.y_test) == 360 and len(d.y_val) == 180
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 1797
    sizes = d.sizes()
    assert max(sizes) - min(sizes) <= 1
    covers_train_exactly(d)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert d.x_train.min() >= 0.0 and d.x_train.max() <= 1.0


def test_same_seed_same_partitions_other_seed_differs() -> None:
    spec = (DatasetConfig(name="digits"), DirichletPartition(alpha=0.3), 5)
    a = build_federated_data(*spec, seed=1)
    b = build_federated_data(*spec, seed=1)
    c = build_federated_data(*spec, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a.partitions, b.partitions, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.partitions, c.partitions, strict=True))


def test_dirichlet_small_alpha_skews_labels() -> None:
    d = build_federated_data(DatasetConfig(name="digits"), DirichletPartition(alpha=0.1), 5, seed=3)
    covers_train_exactly(d)
    # With α = 0.1 a typical client is dominated by few classes.
    top_share = [np.bincount(d.y_train[p], minlength=10).max() / len(p) for p in d.partitions]
    assert np.mean(top_share) > 0.3


def test_pathological_gives_each_client_k_classes() -> None:
    d = build_federated_data(
        DatasetConfig(name="digits"), PathologicalPartition(classes_per_client=2), 10, seed=0
    )
    for p in d.partitions:
        assert len(np.unique(d.y_train[p])) <= 2


def test_breast_cancer_is_standardised_on_train() -> None:
    d = build_federated_data(DatasetConfig(name="breast_cancer"), IidPartition(), 4, seed=0)
    assert d.num_classes == 2 and d.input_shape == (30,)
    assert np.allclose(d.x_train.mean(axis=0), 0.0, atol=1e-4)


def test_synthetic_natural_partition_one_group_per_client() -> None:
    cfg = DatasetConfig(name="synthetic", synthetic=SyntheticConfig(samples_per_client=50))
    d = build_federated_data(cfg, NaturalPartition(), 6, seed=0)
    assert len(d.partitions) == 6
    covers_train_exactly(d)
    assert d.input_shape == (60,) and d.num_classes == 10


def test_synthetic_generator_follows_fedprox() -> None:
    rng = np.random.default_rng(0)
    raw = synthetic_fedprox(SyntheticConfig(alpha=0.0, beta=0.0, iid=True), 3, rng)
    assert raw.groups is not None and set(raw.groups.tolist()) == {0, 1, 2}
    # Σ_jj = j^-1.2: later coordinates have smaller spread.
    std = raw.x.std(axis=0)
    assert std[0] > std[-1] * 5
    assert raw.y.min() >= 0 and raw.y.max() < 10


def test_impossible_dirichlet_minimum_is_an_error() -> None:
    from simulation.fl.data import PartitionError

    with pytest.raises(PartitionError):
        build_federated_data(
            DatasetConfig(name="breast_cancer"),
            DirichletPartition(alpha=0.05, min_partition_size=200),
            10,
            seed=0,
        )
