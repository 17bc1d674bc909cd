"""label_counts.parquet's frame: one row per (client, label), zeros included, hand-derived."""

from __future__ import annotations

import numpy as np
import pytest

from simulation.fl.federated import FederatedData, Split
from simulation.results.write import label_counts_frame


def _data(y: list[int], parts: list[list[int]], **kw: object) -> FederatedData:
    empty = Split(np.zeros((0, 1), dtype=np.float32), np.zeros(0, dtype=np.int64))
    return FederatedData(
        x_train=np.zeros((len(y), 1), dtype=np.float32),
        y_train=np.array(y, dtype=np.int64),
        partitions=tuple(np.array(p, dtype=np.int64) for p in parts),
        val=empty,
        test=empty,
        num_classes=3,
        input_shape=(1,),
        **kw,  # type: ignore[arg-type]
    )


def test_label_counts_frame_is_client_major_with_zeros_and_names() -> None:
    # Labels 0 1 1 2 2 2; client 0 holds rows 0, 3 (labels 0, 2), client 1 none, client 2
    # rows 1, 2, 4, 5 (labels 1, 1, 2, 2).
    data = _data(
        [0, 1, 1, 2, 2, 2],
        [[0, 3], [], [1, 2, 4, 5]],
        class_names=("ant", "bee", "cat"),
        client_ids=("u7", "u8", "u9"),
    )
    frame = label_counts_frame(data)
    assert frame.values.tolist() == [
        ["client-000", "u7", 0, "ant", 1],
        ["client-000", "u7", 1, "bee", 0],
        ["client-000", "u7", 2, "cat", 1],
        ["client-001", "u8", 0, "ant", 0],
        ["client-001", "u8", 1, "bee", 0],
        ["client-001", "u8", 2, "cat", 0],
        ["client-002", "u9", 0, "ant", 0],
        ["client-002", "u9", 1, "bee", 2],
        ["client-002", "u9", 2, "cat", 2],
    ]
    assert [str(t) for t in frame.dtypes] == ["str", "str", "int64", "str", "int64"]


def test_label_counts_default_names_and_labels_outside_the_classes() -> None:
    frame = label_counts_frame(_data([2, 0], [[0, 1]]))
    assert frame["natural_id"].tolist() == ["", "", ""]
    assert frame["label_name"].tolist() == ["0", "1", "2"]
    assert frame["count"].tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="training labels outside"):
        _data([3], [[0]]).label_counts()
