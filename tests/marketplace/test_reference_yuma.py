"""Yuma Consensus against bactensor/yuma-simulation on its own cases (rtol 1e-6).

Vectors: tests/fixtures/references/yuma.json, made by yuma_vectors.py from the
simulator's synthetic cases (Case 1 to 19), every epoch, for Yuma 1, Yuma 2
(subtensor) and Yuma 3 (Rhef+relative bonds) at two settings of κ and the bond
penalty.
"""

from __future__ import annotations

import numpy as np
import pytest

from marketplace.yuma import YumaParams, stake_quantile, yuma_epoch
from tests.fixtures.references._reference import read_vectors

RUNS = read_vectors("yuma.json")["runs"]


def _id(run: dict) -> str:
    return f"{run['case'].split(' - ')[0]}|{run['version']}|k{run['params']['kappa']}"


@pytest.mark.parametrize("run", RUNS, ids=[_id(r) for r in RUNS])
def test_every_epoch_matches_yuma_simulation(run: dict) -> None:
    params = YumaParams(**run["params"])
    bonds = None
    for epoch, (w, s, ref) in enumerate(
        zip(run["weights"], run["stakes"], run["epochs"], strict=True)
    ):
        out = yuma_epoch(
            np.array(w), np.array(s), version=run["version"], params=params, bonds_prev=bonds
        )
        bonds = out.validator_ema_bond
        for ours, key in (
            (out.server_consensus_weight, "consensus"),
            (out.server_incentive, "incentive"),
            (out.server_rank, "rank"),
            (out.validator_ema_bond, "bonds"),
            (out.validator_reward_normalized, "dividends"),
        ):
            np.testing.assert_allclose(
                ours, ref[key], rtol=1e-6, atol=1e-9, err_msg=f"epoch {epoch}: {key}"
            )


def test_zero_total_stake_is_an_error_not_a_fallback() -> None:
    with pytest.raises(ValueError, match="positive total stake"):
        yuma_epoch(np.ones((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="positive total stake"):
        stake_quantile(np.array([1.0, 2.0]), np.zeros(2), 0.5)


def test_stake_quantile_by_hand() -> None:
    # Scores 5, 4, 1 with stakes 0.2, 0.3, 0.5: from the top, 0.2 < κ=0.5, 0.5 ≥ 0.5 → 4.
    scores, stakes = np.array([1.0, 5.0, 4.0]), np.array([0.5, 0.2, 0.3])
    assert stake_quantile(scores, stakes, 0.5) == 4.0
    assert stake_quantile(scores, stakes, 0.6) == 1.0
    assert stake_quantile(scores, stakes, 0.2) == 5.0
