"""Flower's aggregators, as FedMarket names them, against ByzFL on the same inputs.

Vectors: tests/fixtures/references/byzfl.json, made by byzfl_vectors.py with
``byzfl`` from PyPI in a scratch environment. The parameter mapping between
the two definitions (Krum's neighbour count, Multi-Krum's selection size,
trimmed mean's cut) is documented there and in docs/references.md.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import numpy as np
import pytest

from simulation.fl.aggregation import create_strategy
from tests.fixtures.references._reference import read_vectors
from tests.strategies.messages import as_numpy, reply

VECTORS = read_vectors("byzfl.json")["cases"]


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    """Flower's Bulyan runs ``gc.collect()`` once per reply
    (``ArrayRecord.to_numpy_ndarrays(keep_input=False)``), about 1 s each over the
    test process's heap; frozen, the heap is not traversed."""
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_aggregate_matches_byzfl(case: dict, frozen_heap: None) -> None:
    updates = np.asarray(case["updates"], dtype=np.float64)
    msgs = [
        reply(1, i, {"w": row}, n)
        for i, (row, n) in enumerate(zip(updates, case["num_examples"], strict=True))
    ]
    strategy = create_strategy(case["rule"], case["params"])

    arrays, _ = strategy.aggregate_train(1, msgs)

    np.testing.assert_allclose(as_numpy(arrays), case["expected"], rtol=1e-6, atol=1e-12)


def test_vectors_cover_every_flower_aggregator() -> None:
    assert {c["rule"] for c in VECTORS} == {
        "fedavg",
        "fedprox",
        "fedmedian",
        "fedtrimmedavg",
        "krum",
        "multikrum",
        "bulyan",
    }
