"""FoolsGold against the authors' reference code, on the same histories (rtol 1e-6).

Vectors: tests/fixtures/references/foolsgold.json, made by foolsgold_vectors.py
from DistributedML/FoolsGold (deep-fg/fg/foolsgold.py) in a scratch environment.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulation.fl.strategies import FoolsGold
from tests.fixtures.references._reference import read_vectors
from tests.strategies.messages import as_numpy, record, replies

VECTORS = read_vectors("foolsgold.json")["cases"]


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_learning_rates_match_the_authors_code(case: dict) -> None:
    histories = [np.asarray(h, dtype=np.float64) for h in case["histories"]]

    alpha = FoolsGold().learning_rates(histories)

    np.testing.assert_allclose(alpha, case["alpha"], rtol=1e-6, atol=1e-12)


def test_anti_correlated_client_keeps_its_weight() -> None:
    # The review's case, end to end: (1,0) and (0.9,0.3) look alike, (−1,−0.2) is
    # anti-correlated with both. The authors' code gives α = [0, 0, 1]; a −∞
    # diagonal made v_3 negative and pardoning flipped signs, giving [1, 1, 0].
    glob = [0.0, 0.0]
    strategy = FoolsGold()
    strategy.set_global(record(glob))

    arrays, _ = strategy.aggregate_train(
        1, replies(1, {0: [1, 0], 1: [0.9, 0.3], 2: [-1, -0.2]}, glob)
    )

    assert strategy.last_weights == {0: 0.0, 1: 0.0, 2: 1.0}
    np.testing.assert_allclose(as_numpy(arrays), [-1.0, -0.2])


def test_identical_histories_all_get_zero() -> None:
    # Exact arithmetic: every cos = 1, so every α = 1 − 1 = 0 (the reference divides
    # 0 by 0 here). FedMarket gives every client 0, whatever the rounding of cos.
    same = np.array([0.5, -0.25, 1e-3])
    alpha = FoolsGold().learning_rates([same.copy(), same.copy(), same.copy()])

    np.testing.assert_array_equal(alpha, [0.0, 0.0, 0.0])
