"""Client partitions: every horizontal Flower Datasets partitioner, by ``partition.kind``.

Each kind is a registry entry that turns the scenario's partition section into
the Flower partitioner with the same parameters; :func:`partition_rows` runs
it and reads back the row numbers each client holds (an ``idx`` column the
dataset carries). The same code partitions the bundled datasets (a small
in-memory table of ``idx``, ``label``, ``group``) and the Hub datasets (the
``FederatedDataset``'s own train split, whose columns are the Hub's).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr_datasets.partitioner import (
    ContinuousPartitioner,
    DirichletPartitioner,
    DistributionPartitioner,
    ExponentialPartitioner,
    GroupedNaturalIdPartitioner,
    IidPartitioner,
    InnerDirichletPartitioner,
    LinearPartitioner,
    NaturalIdPartitioner,
    Partitioner,
    PathologicalPartitioner,
    ShardPartitioner,
    SizePartitioner,
    SquarePartitioner,
)

from simulation.config.schema import NATURAL_KINDS, Partition
from simulation.fl.sources import DataError
from simulation.registry import Registry

__all__ = ["PARTITIONERS", "PartitionContext", "PartitionError", "make_partitioner"]


class PartitionError(DataError):
    """Raised when a partition spec cannot be met (e.g. Dirichlet minimum size)."""


@dataclass(frozen=True)
class PartitionContext:
    """What a partitioner needs beyond the scenario's section.

    ``label``/``group`` are the dataset's column names of the class label and the
    natural client id; ``rows`` and ``labels`` describe the training split (for
    kinds whose parameters derive from it); ``rng`` draws what the scenario leaves
    to the seed (the ``distribution`` kind's power-law amounts).
    """

    num_clients: int
    seed: int
    rows: int
    labels: int
    rng: np.random.Generator
    label: str = "label"
    group: str | None = "group"

    def by_label(self) -> dict[str, Any]:
        """The arguments Flower's label-based partitioners share (shuffled, seeded)."""
        return {
            "num_partitions": self.num_clients,
            "partition_by": self.label,
            "shuffle": True,
            "seed": self.seed,
        }

    def natural_column(self, kind: str) -> str:
        """The natural-id column, or an error naming the kind that needs it."""
        if self.group is None:
            raise PartitionError(f"{kind} needs natural client ids; this dataset has none")
        return self.group


PartitionerFactory = Callable[[Any, PartitionContext], Partitioner]
PARTITIONERS: Registry[PartitionerFactory] = Registry("partition kind")


@PARTITIONERS.decorator("iid")
def _iid(spec: Any, ctx: PartitionContext) -> Partitioner:
    return IidPartitioner(num_partitions=ctx.num_clients)


@PARTITIONERS.decorator("dirichlet")
def _dirichlet(spec: Any, ctx: PartitionContext) -> Partitioner:
    return DirichletPartitioner(
        alpha=spec.alpha,
        min_partition_size=spec.min_partition_size,
        self_balancing=False,
        **ctx.by_label(),
    )


@PARTITIONERS.decorator("pathological")
def _pathological(spec: Any, ctx: PartitionContext) -> Partitioner:
    return PathologicalPartitioner(
        num_classes_per_partition=spec.classes_per_client,
        class_assignment_mode="random",
        **ctx.by_label(),
    )


@PARTITIONERS.decorator("natural")
def _natural(spec: Any, ctx: PartitionContext) -> Partitioner:
    return NaturalIdPartitioner(partition_by=ctx.natural_column("natural"))


@PARTITIONERS.decorator("grouped_natural")
def _grouped_natural(spec: Any, ctx: PartitionContext) -> Partitioner:
    return GroupedNaturalIdPartitioner(
        partition_by=ctx.natural_column("grouped_natural"),
        group_size=spec.group_size,
        mode=spec.mode,
        sort_unique_ids=spec.sort_ids,
    )


@PARTITIONERS.decorator("shard")
def _shard(spec: Any, ctx: PartitionContext) -> Partitioner:
    return ShardPartitioner(
        num_shards_per_partition=spec.shards_per_client,
        shard_size=spec.shard_size,
        keep_incomplete_shard=spec.keep_incomplete_shard,
        **ctx.by_label(),
    )


@PARTITIONERS.decorator("size")
def _size(spec: Any, ctx: PartitionContext) -> Partitioner:
    if sum(spec.sizes) > ctx.rows:
        raise PartitionError(
            f"sizes sum to {sum(spec.sizes)} but the training split has {ctx.rows} rows"
        )
    return SizePartitioner(partition_sizes=list(spec.sizes))


@PARTITIONERS.decorator("linear")
def _linear(spec: Any, ctx: PartitionContext) -> Partitioner:
    return LinearPartitioner(num_partitions=ctx.num_clients)


@PARTITIONERS.decorator("square")
def _square(spec: Any, ctx: PartitionContext) -> Partitioner:
    return SquarePartitioner(num_partitions=ctx.num_clients)


@PARTITIONERS.decorator("exponential")
def _exponential(spec: Any, ctx: PartitionContext) -> Partitioner:
    return ExponentialPartitioner(num_partitions=ctx.num_clients)


@PARTITIONERS.decorator("inner_dirichlet")
def _inner_dirichlet(spec: Any, ctx: PartitionContext) -> Partitioner:
    if spec.sizes is None:
        base, extra = divmod(ctx.rows, ctx.num_clients)
        sizes = [base + (1 if i < extra else 0) for i in range(ctx.num_clients)]
    else:
        sizes = list(spec.sizes)
        if sum(sizes) != ctx.rows:
            raise PartitionError(
                f"sizes sum to {sum(sizes)} but the training split has {ctx.rows} rows "
                "(inner_dirichlet assigns every row)"
            )
    return InnerDirichletPartitioner(
        partition_sizes=sizes,
        partition_by=ctx.label,
        alpha=spec.alpha,
        shuffle=True,
        seed=ctx.seed,
    )


@PARTITIONERS.decorator("continuous")
def _continuous(spec: Any, ctx: PartitionContext) -> Partitioner:
    args = ctx.by_label()
    if spec.by != "label":
        args["partition_by"] = spec.by
    return ContinuousPartitioner(strictness=spec.strictness, **args)


@PARTITIONERS.decorator("distribution")
def _distribution(spec: Any, ctx: PartitionContext) -> Partitioner:
    cells = spec.labels_per_client * ctx.num_clients
    if cells % ctx.labels:
        raise PartitionError(
            f"labels_per_client × clients ({cells}) must be a multiple of the {ctx.labels} labels"
        )
    # The power law of Li et al. 2020, as in Flower's DistributionPartitioner example.
    array = ctx.rng.lognormal(spec.mu, spec.sigma, cells).reshape(ctx.labels, -1)
    return DistributionPartitioner(
        distribution_array=array,
        num_unique_labels_per_partition=spec.labels_per_client,
        preassigned_num_samples_per_label=spec.preassigned_per_label,
        rescale=spec.rescale,
        **ctx.by_label(),
    )


def make_partitioner(spec: Partition, ctx: PartitionContext) -> Partitioner:
    """The Flower partitioner for ``spec`` (a ``PartitionError`` if it cannot be made)."""
    try:
        return PARTITIONERS.get(spec.kind)(spec, ctx)
    except PartitionError:
        raise
    except ValueError as exc:
        raise PartitionError(f"{spec.kind} partition cannot be made: {exc}") from exc


def partition_rows(
    partitioner: Partitioner,
    spec: Partition,
    ctx: PartitionContext,
    load: Callable[[int], Any] | None = None,
) -> tuple[np.ndarray, ...]:
    """Row numbers (the ``idx`` column) of each client's partition, sorted.

    ``load`` reads partition ``i`` (default: ``partitioner.load_partition``; the Hub
    datasets pass ``FederatedDataset.load_partition``). Natural kinds may find more
    ids (groups) than clients: the clients are then ``num_clients`` of them drawn
    with ``ctx.rng``, kept in id order.
    """
    load = load or partitioner.load_partition
    try:
        with warnings.catch_warnings():
            # flwr-datasets warns on every Dirichlet re-draw; failure is reported below.
            warnings.simplefilter("ignore", UserWarning)
            # pyarrow's deprecation notice about the sort ``datasets`` does for shards.
            warnings.filterwarnings("ignore", "Specifying null_placement", FutureWarning)
            made = partitioner.num_partitions
            chosen = chosen_partitions(made, spec, ctx)
            out = tuple(np.sort(np.asarray(load(i)["idx"], dtype=np.int64)) for i in chosen)
    except (ValueError, KeyError) as exc:
        raise PartitionError(f"{spec.kind} partition cannot be met: {exc}") from exc
    empty = [i for i, rows in enumerate(out) if len(rows) == 0]
    if empty:
        raise PartitionError(
            f"{spec.kind} partition leaves client {empty[0]} without data "
            f"({len(empty)} of {ctx.num_clients} clients empty)"
        )
    return out


def chosen_partitions(made: int, spec: Partition, ctx: PartitionContext) -> list[int]:
    """Which of the ``made`` partitions the clients get (all of them, unless a natural
    kind made more than there are clients)."""
    n = ctx.num_clients
    if spec.kind in NATURAL_KINDS and made > n:
        return sorted(int(i) for i in ctx.rng.choice(made, size=n, replace=False))
    if made != n:
        what = "natural ids (groups)" if spec.kind in NATURAL_KINDS else "partitions"
        raise PartitionError(f"the data gives {made} {what}, but there are {n} clients")
    return list(range(n))
