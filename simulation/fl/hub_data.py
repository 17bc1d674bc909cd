"""The Hub benchmarks through ``flwr_datasets.FederatedDataset``, from local files only.

``build_hub_data`` locates the dataset (``dataset.path`` or the local HF
cache, :mod:`simulation.fl.sources`), hands it to a ``FederatedDataset`` whose
preprocessor (:class:`ServerSplits`) carves the server's validation and test
splits, and partitions the rest with the scenario's Flower partitioner through
``FederatedDataset.load_partition``. Features are decoded only for the rows
asked for: a client process decodes its own partition, the server its
validation and test splits.

Inputs are scaled to [0, 1] (images, channels first) or are LEAF's character
indices (Shakespeare), with no dataset-specific normalisation, so attacks that
stamp a trigger at 1.0 mean the same on every image dataset.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict
from flwr_datasets import FederatedDataset
from flwr_datasets.partitioner import Partitioner
from flwr_datasets.preprocessor import Preprocessor

from simulation.config.catalog import SHAKESPEARE_LETTERS, DatasetFacts, facts
from simulation.config.schema import NATURAL_KINDS, HubDatasetConfig, Partition
from simulation.fl.federated import FederatedData, Split
from simulation.fl.partitions import PartitionContext, make_partitioner, partition_rows
from simulation.fl.sources import DatasetError, locate
from simulation.rng import SeedTree

__all__ = ["ImageRows", "ServerSplits", "TextRows", "build_hub_data", "encode_text"]

log = logging.getLogger("fedmarket.data")

_OOV = len(SHAKESPEARE_LETTERS)
_LOOKUP = np.full(257, _OOV, dtype=np.uint8)
for _i, _ch in enumerate(SHAKESPEARE_LETTERS):
    _LOOKUP[ord(_ch)] = _i


def encode_text(strings: Any, length: int) -> np.ndarray:
    """Strings of ``length`` characters as LEAF letter indices (``uint8``; any other
    character is the extra ``<oov>`` class)."""
    items = [str(s) for s in strings]
    bad = next((i for i, s in enumerate(items) if len(s) != length), None)
    if bad is not None:
        raise DatasetError(
            f"row {bad} has {len(items[bad])} characters, expected {length}: {items[bad]!r}"
        )
    codes = np.frombuffer("".join(items).encode("utf-32-le"), dtype=np.uint32)
    return _LOOKUP[np.minimum(codes, 256)].reshape(len(items), length)


class ImageRows:
    """Images of a split by row number, decoded on demand to ``(N, C, H, W)`` in [0, 1]."""

    def __init__(self, data: Dataset, info: DatasetFacts) -> None:
        assert info.feature_column is not None and info.input_shape is not None
        self._data, self._column, self._mode = data, info.feature_column, info.image_mode
        self._shape = info.input_shape

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        rows = np.asarray(index, dtype=np.int64)
        if rows.size == 0:
            return np.zeros((0, *self._shape), dtype=np.float32)
        images = self._data.select(rows)[self._column]
        arr = np.stack([np.asarray(im.convert(self._mode), dtype=np.uint8) for im in images])
        arr = arr[:, None] if arr.ndim == 3 else arr.transpose(0, 3, 1, 2)
        if arr.shape[1:] != self._shape:
            raise DatasetError(f"images are {arr.shape[1:]}, expected {self._shape} (C, H, W)")
        return arr.astype(np.float32) / np.float32(255.0)


class TextRows:
    """Character windows of a split by row number, as ``uint8`` letter indices."""

    def __init__(self, data: Dataset, info: DatasetFacts) -> None:
        assert info.feature_column is not None and info.input_shape is not None
        self._data, self._column, self._length = data, info.feature_column, info.input_shape[0]

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        rows = np.asarray(index, dtype=np.int64)
        return encode_text(self._data.select(rows)[self._column], self._length)


def _rows(data: Dataset, info: DatasetFacts) -> ImageRows | TextRows:
    return TextRows(data, info) if info.kind == "text" else ImageRows(data, info)


def labels_of(data: Dataset, info: DatasetFacts) -> np.ndarray:
    """The split's class labels as ``int64`` (Shakespeare: the next character's index)."""
    column = data.with_format("numpy")[info.label_column]
    if info.kind == "text":
        return encode_text(column, 1)[:, 0].astype(np.int64)
    labels = np.asarray(column, dtype=np.int64)
    assert info.num_classes is not None
    if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise DatasetError(
            f"labels ({info.label_column}) span {labels.min()}..{labels.max()}, "
            f"expected 0..{info.num_classes - 1}"
        )
    return labels


def split_within_groups(
    groups: np.ndarray,
    validation: float,
    test: float,
    rng: np.random.Generator,
    *,
    temporal: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of each group (writer, role) split ``1 - validation - test`` / ``validation``
    / ``test``: ⌊n·test⌋ test and ⌊n·validation⌋ validation rows per group of n.

    ``temporal`` keeps file order within a group and takes the *last* rows for test
    and the ones before them for validation (Shakespeare windows overlap, so a random
    split would test on text the model trained on); otherwise the order is shuffled.
    Returns (train, validation, test) row numbers; train in group order.
    """
    codes, _ = pd.factorize(groups, sort=True)
    n = len(codes)
    order = np.arange(n) if temporal else rng.permutation(n)
    grouped = order[np.argsort(codes[order], kind="stable")]
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    g = codes[grouped]
    rank = np.arange(n) - starts[g]
    size = counts[g]
    n_test = np.floor(size * test).astype(np.int64)
    n_val = np.floor(size * validation).astype(np.int64)
    is_test = rank >= size - n_test
    is_val = ~is_test & (rank >= size - n_test - n_val)
    train = grouped[~is_test & ~is_val]
    return train, np.sort(grouped[is_val]), np.sort(grouped[is_test])


class ServerSplits(Preprocessor):  # type: ignore[misc]
    """``FederatedDataset`` preprocessor: the server's validation and test splits.

    Datasets with an official test split keep it as the server's test split and
    carve a random ``validation_fraction`` of the training rows; femnist and
    shakespeare split each writer's/role's rows (:func:`split_within_groups`).
    The training split gets an ``idx`` column (its row number as loaded), so each
    Flower partition maps back to rows, and is shuffled with the seed (Flower's
    own ``shuffle`` is off: it would lose Shakespeare's order).
    """

    def __init__(self, cfg: HubDatasetConfig, rng: np.random.Generator) -> None:
        self.cfg, self.info, self.rng = cfg, facts(cfg.name), rng
        self.train: Dataset | None = None
        self.groups: np.ndarray | None = None

    def _check(self, dataset: DatasetDict) -> Dataset:
        info = self.info
        wanted = ("train", "test") if info.official_test else ("train",)
        missing = [s for s in wanted if s not in dataset]
        if missing:
            raise DatasetError(
                f"{info.name}: no {missing[0]} split (splits found: {', '.join(dataset)})"
            )
        train: Dataset = dataset["train"]
        needed = [c for c in (info.feature_column, info.label_column, info.natural_id) if c]
        absent = [c for c in needed if c not in train.column_names]
        if absent:
            raise DatasetError(
                f"{info.name}: no column {absent[0]!r} (columns: {', '.join(train.column_names)});"
                f" the data must follow the Hub repo {info.hub_id}"
            )
        return train

    def __call__(self, dataset: DatasetDict) -> DatasetDict:
        train = self._check(dataset)
        self.train = train
        n, cfg = len(train), self.cfg
        if self.info.natural_id:
            self.groups = np.asarray(train.with_format("numpy")[self.info.natural_id])
        if self.info.official_test:
            order = self.rng.permutation(n)
            k = int(n * cfg.validation_fraction)
            rows, val = order[k:], np.sort(order[:k])
            test = dataset["test"]
        else:
            assert self.groups is not None and cfg.test_fraction is not None
            rows, val, test_rows = split_within_groups(
                self.groups,
                cfg.validation_fraction,
                cfg.test_fraction,
                self.rng,
                temporal=self.info.kind == "text",
            )
            rows = self.rng.permutation(rows)
            test = train.select(test_rows)
        return DatasetDict(
            {
                "train": train.add_column("idx", np.arange(n)).select(rows),
                "validation": train.select(val),
                "test": test,
            }
        )


class LatePartitioner(Partitioner):  # type: ignore[misc]
    """A Flower partitioner made once its split is loaded: some kinds' parameters
    derive from the split (``inner_dirichlet``'s equal sizes, ``distribution``'s
    label count), which a ``FederatedDataset`` loads only after it is built."""

    def __init__(self) -> None:
        super().__init__()
        self.inner: Partitioner | None = None

    def build(self, spec: Partition, ctx: PartitionContext) -> None:
        """Make the real partitioner over the assigned split."""
        self.inner = make_partitioner(spec, ctx)
        self.inner.dataset = self.dataset

    def load_partition(self, partition_id: int) -> Dataset:
        assert self.inner is not None, "build() first"
        return self.inner.load_partition(partition_id)

    @property
    def num_partitions(self) -> int:
        assert self.inner is not None, "build() first"
        return int(self.inner.num_partitions)


def _client_ids(parts: tuple[np.ndarray, ...], groups: np.ndarray | None) -> tuple[str, ...]:
    if groups is None:
        return ()
    return tuple("+".join(sorted({str(g) for g in groups[p]})) for p in parts)


def build_hub_data(
    cfg: HubDatasetConfig, partition: Partition, num_clients: int, tree: SeedTree
) -> FederatedData:
    """Load ``cfg``'s dataset from local files through Flower Datasets and partition it."""
    info = facts(cfg.name)
    source = locate(cfg)
    splits = ServerSplits(cfg, tree.numpy("split"))
    late = LatePartitioner()
    fds = FederatedDataset(
        partitioners={"train": late}, preprocessor=splits, shuffle=False, **source.load_arguments()
    )
    try:
        train = fds.load_split("train")
    except DatasetError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"{cfg.name}: cannot load {source.describe()}: {exc}") from exc
    fds.partitioners  # noqa: B018  (assigns the train split to the partitioner)
    assert splits.train is not None
    ctx = PartitionContext(
        num_clients=num_clients,
        seed=tree.integer("partition") % (2**32),
        rows=len(train),
        labels=len(train.unique(info.label_column)),
        rng=tree.numpy("partition-draws"),
        label=info.label_column,
        group=info.natural_id,
    )
    late.build(partition, ctx)
    parts = partition_rows(late, partition, ctx, load=lambda i: fds.load_partition(i, "train"))
    validation, test = fds.load_split("validation"), fds.load_split("test")
    assert info.input_shape is not None and info.num_classes is not None
    data = FederatedData(
        x_train=_rows(splits.train, info),
        y_train=labels_of(splits.train, info),
        partitions=parts,
        val=Split(_rows(validation, info), labels_of(validation, info)),
        test=Split(_rows(test, info), labels_of(test, info)),
        num_classes=info.num_classes,
        input_shape=info.input_shape,
        class_names=info.class_names,
        source=source.describe(),
        client_ids=_client_ids(parts, splits.groups) if partition.kind in NATURAL_KINDS else (),
    )
    log.info(
        "dataset %s from %s: %d train / %d validation / %d test rows, %d clients",
        cfg.name,
        source.describe(),
        len(train),
        len(validation),
        len(test),
        num_clients,
    )
    return data
