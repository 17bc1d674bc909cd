"""Client-level DP through Flower's server-side wrappers (hand-computed clipping)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
)

from simulation.fl.strategies import (
    FoolsGold,
    NeedsGlobal,
    ServerSideAdaptiveClippingDP,
    ServerSideFixedClippingDP,
    wrap_client_dp,
)
from tests.strategies.messages import as_numpy, record, replies


def _fedavg() -> FedAvg:
    return FedAvg(fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1)


def test_fixed_clipping_without_noise_clips_to_the_norm() -> None:
    # Prepare: c = 1. Client 0's update (3,4) has norm 5 → (0.6, 0.8);
    # client 1's (0.3, 0.4) has norm 0.5 ≤ c and is kept; client 2 sent the global
    # model back (a zero update, kept). FedAvg (equal weights):
    # ((0.6,0.8) + (0.3,0.4) + (0,0)) / 3 = (0.3, 0.4).
    glob = [1.0, 1.0]
    dp = wrap_client_dp(
        _fedavg(),
        "server-fixed",
        {"noise_multiplier": 0.0, "clipping_norm": 1.0, "num_sampled_clients": 3},
    )
    assert isinstance(dp, DifferentialPrivacyServerSideFixedClipping)
    assert isinstance(dp, NeedsGlobal)
    dp.set_global(record(glob))
    msgs = replies(1, {0: [3, 4], 1: [0.3, 0.4], 2: [0, 0]}, glob)

    # Execute
    arrays, _ = dp.aggregate_train(1, msgs)

    # Assert
    np.testing.assert_allclose(as_numpy(arrays), [1.3, 1.4], rtol=1e-12)
    np.testing.assert_allclose(as_numpy(msgs[0].content["arrays"]), [1.6, 1.8], rtol=1e-12)


def test_fixed_clipping_forwards_the_global_model_and_weights() -> None:
    # Prepare: FoolsGold inside DP; sybils 0 and 1 send (3,4) → clipped (0.6,0.8);
    # honest 2 sends (0,−2) → clipped (0,−1). Sybils get 0, honest 1.
    glob = [0.0, 0.0]
    dp = wrap_client_dp(
        FoolsGold(),
        "server-fixed",
        {"noise_multiplier": 0.0, "clipping_norm": 1.0, "num_sampled_clients": 3},
    )
    assert isinstance(dp, NeedsGlobal)
    dp.set_global(record(glob))

    # Execute
    arrays, _ = dp.aggregate_train(1, replies(1, {0: [3, 4], 1: [3, 4], 2: [0, -2]}, glob))

    # Assert
    np.testing.assert_allclose(as_numpy(arrays), [0.0, -1.0], atol=1e-12)
    assert getattr(dp, "last_weights") == {0: 0.0, 1: 0.0, 2: 1.0}  # noqa: B009


def test_adaptive_clipping_clips_then_adapts_the_norm() -> None:
    # Prepare: initial C = 1, target quantile 0.5, lr 0.2, no noise. One client,
    # update (3,4) → (0.6,0.8); clipped fraction 1 → C = exp(−0.2·(1 − 0.5)).
    dp = wrap_client_dp(
        _fedavg(),
        "server-adaptive",
        {
            "noise_multiplier": 0.0,
            "num_sampled_clients": 1,
            "initial_clipping_norm": 1.0,
            "target_clipped_quantile": 0.5,
            "clip_norm_lr": 0.2,
        },
    )
    assert isinstance(dp, ServerSideAdaptiveClippingDP)
    assert isinstance(dp, DifferentialPrivacyServerSideAdaptiveClipping)
    dp.set_global(record([0.0, 0.0]))

    # Execute
    arrays, _ = dp.aggregate_train(1, replies(1, {0: [3, 4]}, [0.0, 0.0]))

    # Assert
    np.testing.assert_allclose(as_numpy(arrays), [0.6, 0.8], rtol=1e-12)
    assert dp.clipping_norm == pytest.approx(math.exp(-0.1))


def test_noise_is_seeded_and_deterministic() -> None:
    params = {"noise_multiplier": 1.0, "clipping_norm": 1.0, "num_sampled_clients": 2}
    outs = []
    for seed in (5, 5, 6):
        dp = wrap_client_dp(_fedavg(), "server-fixed", params, rng=np.random.default_rng(seed))
        assert isinstance(dp, ServerSideFixedClippingDP)
        dp.set_global(record([0.0] * 8))
        arrays, _ = dp.aggregate_train(1, replies(1, {0: [1.0] * 8, 1: [-1.0] * 8}, [0.0] * 8))
        outs.append(as_numpy(arrays).tobytes())

    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_aggregate_without_the_global_model_fails_loudly() -> None:
    dp = wrap_client_dp(
        _fedavg(),
        "server-fixed",
        {"noise_multiplier": 0.0, "clipping_norm": 1.0, "num_sampled_clients": 1},
    )
    with pytest.raises(RuntimeError, match="set_global"):
        dp.aggregate_train(1, replies(1, {0: [1.0]}, [0.0]))


def test_bad_modes_and_params_are_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="fixedclipping_mod"):
        wrap_client_dp(_fedavg(), "client-fixed", {})
    with pytest.raises(ValueError, match="valid: server-adaptive, server-fixed"):
        wrap_client_dp(_fedavg(), "central", {})
    with pytest.raises(ValueError, match=r"no parameter sigma \(valid: clipping_norm"):
        wrap_client_dp(_fedavg(), "server-fixed", {"sigma": 1.0})
