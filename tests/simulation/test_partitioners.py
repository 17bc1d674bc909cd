"""Every horizontal Flower Datasets partitioner as ``partition.kind``.

Each kind is checked against what its definition implies on the bundled 8×8
digits (1,257 training rows at the default splits): sizes derived by hand from
the partitioner's rule, label sets, and the seed. Schema errors name the field.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from simulation.config.schema import (
    ContinuousPartition,
    DatasetConfig,
    DistributionPartition,
    ExponentialPartition,
    GroupedNaturalPartition,
    InnerDirichletPartition,
    LinearPartition,
    NaturalPartition,
    ShardPartition,
    SizePartition,
    SquarePartition,
    SyntheticConfig,
)
from simulation.errors import ScenarioError
from simulation.fl.data import build_federated_data
from simulation.fl.partitions import PARTITIONERS, PartitionError
from simulation.scenario.load import validate_data

DIGITS = DatasetConfig(name="digits")
N = 1257  # 1,797 digits − 20% test − 10% validation (sklearn's rounding)


def build(spec: object, clients: int = 10, seed: int = 0):  # type: ignore[no-untyped-def]
    return build_federated_data(DIGITS, spec, clients, seed=seed)  # type: ignore[arg-type]


def labels(data, i: int) -> set[int]:  # type: ignore[no-untyped-def]
    return set(data.y_train[data.partitions[i]].tolist())


def covers(data, rows: int) -> None:  # type: ignore[no-untyped-def]
    every = np.concatenate(data.partitions)
    assert len(every) == len(np.unique(every)) == rows


def test_every_flower_horizontal_partitioner_has_a_kind() -> None:
    assert set(PARTITIONERS.names()) == {
        "iid",
        "dirichlet",
        "pathological",
        "natural",
        "shard",
        "size",
        "linear",
        "square",
        "exponential",
        "inner_dirichlet",
        "grouped_natural",
        "continuous",
        "distribution",
    }


def test_shard_two_shards_per_client() -> None:
    data = build(ShardPartition(shards_per_client=2))
    # Shard size ⌊1257 / (10 × 2)⌋ = 62; each client gets two shards of label-sorted rows.
    assert data.sizes() == [124] * 10
    assert all(len(labels(data, i)) <= 4 for i in range(10))


def test_shard_by_size() -> None:
    data = build(ShardPartition(shards_per_client=None, shard_size=50))
    # ⌊1257 / 50⌋ = 25 shards dealt to 10 clients: 2 or 3 each, 25 in all.
    assert sorted(set(data.sizes())) == [100, 150] and sum(data.sizes()) == 25 * 50


def test_size_linear_square_follow_their_rule() -> None:
    sizes = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    assert build(SizePartition(sizes=sizes)).sizes() == list(sizes)
    # size_k = ⌊N·f(k+1)/Σf⌋, the remainder to the last client (IdToSizeFncPartitioner).
    for spec, f in ((LinearPartition(), lambda k: k), (SquarePartition(), lambda k: k * k)):
        weights = [f(k) for k in range(1, 11)]
        expected = [N * w // sum(weights) for w in weights]
        expected[-1] += N - sum(expected)
        data = build(spec)
        assert data.sizes() == expected
        covers(data, N)


def test_exponential_with_ten_clients_starves_the_first() -> None:
    # e^1/Σe^k × 1257 < 1: the first client gets nothing, which is an error.
    with pytest.raises(PartitionError, match="exponential"):
        build(ExponentialPartition())
    data = build(ExponentialPartition(), clients=3)
    e = np.exp([1.0, 2.0, 3.0])
    expected = [int(N * x / e.sum()) for x in e]
    expected[-1] += N - sum(expected)
    assert data.sizes() == expected


def test_inner_dirichlet_equal_sizes_by_default_and_explicit_sizes() -> None:
    data = build(InnerDirichletPartition(alpha=0.3))
    assert data.sizes() == [126] * 7 + [125] * 3  # 1257 = 7·126 + 3·125
    covers(data, N)
    sizes = (300, 300, 300, 357)
    assert build(InnerDirichletPartition(alpha=1.0, sizes=sizes), clients=4).sizes() == list(sizes)
    with pytest.raises(PartitionError, match="sum to 1200 but the training split has 1257"):
        build(InnerDirichletPartition(alpha=1.0, sizes=(300, 300, 300, 300)), clients=4)


def test_continuous_strict_sorts_clients_by_label() -> None:
    data = build(ContinuousPartition(strictness=1.0))
    ranges = [(min(labels(data, i)), max(labels(data, i))) for i in range(10)]
    assert all(hi <= lo for (_, hi), (lo, _) in itertools.pairwise(ranges))
    mixed = build(ContinuousPartition(strictness=0.0))
    assert all(len(labels(mixed, i)) >= 8 for i in range(10))  # IID-like


def test_distribution_gives_adjacent_labels() -> None:
    data = build(DistributionPartition(labels_per_client=2, preassigned_per_label=5))
    # Client k holds labels k and k + 1 (mod 10), at least 5 of each.
    for k in range(10):
        assert labels(data, k) == {k, (k + 1) % 10}
        counts = np.bincount(data.y_train[data.partitions[k]], minlength=10)
        assert counts[k] >= 5 and counts[(k + 1) % 10] >= 5
    covers(data, N)
    with pytest.raises(PartitionError, match="multiple of the 10 labels"):
        build(DistributionPartition(labels_per_client=3), clients=7)
    other = build(DistributionPartition(labels_per_client=2), seed=1)
    assert other.sizes() != data.sizes()  # the power-law amounts come from the seed


def test_grouped_natural_on_generated_groups() -> None:
    synthetic = DatasetConfig(name="synthetic", synthetic=SyntheticConfig(samples_per_client=30))
    natural = build_federated_data(synthetic, NaturalPartition(), 6, seed=0)
    with pytest.raises(PartitionError, match="the data gives 3 natural ids"):
        build_federated_data(synthetic, GroupedNaturalPartition(group_size=2), 6, seed=0)
    assert len(natural.partitions) == 6


@pytest.mark.parametrize(
    ("partition", "field", "reason"),
    [
        ({"kind": "shard", "shards_per_client": None}, "partition", "give shards_per_client"),
        ({"kind": "shard", "shards_per_client": 0}, "partition.shards_per_client", "greater than"),
        ({"kind": "size", "sizes": [1, 2]}, "partition.sizes", "2 sizes for 10 clients"),
        ({"kind": "size", "sizes": [-1] * 10}, "partition.sizes", ">= 0"),
        ({"kind": "inner_dirichlet", "alpha": 0}, "partition.alpha", "greater than 0"),
        ({"kind": "continuous", "strictness": 1.5}, "partition.strictness", "less than"),
        ({"kind": "continuous", "strictness": 0.5, "by": "hsf_id"}, "partition.by", "hsf_id"),
        ({"kind": "grouped_natural", "group_size": 2}, "partition.kind", "natural client ids"),
        ({"kind": "distribution", "sigma": -1}, "partition.sigma", "greater than"),
        ({"kind": "linear", "alpha": 1}, "partition.alpha", "unknown field (valid: kind)"),
    ],
)
def test_partition_params_are_schema_validated(partition: dict, field: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        validate_data({"partition": partition}, "s.yaml")
    (problem,) = exc.value.problems
    assert problem.field == field and reason in problem.reason
