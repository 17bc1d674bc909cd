"""FoolsGold (Fung et al., RAID 2020): hand-computed weights and aggregates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from simulation.fl.strategies import FoolsGold, NeedsGlobal
from tests.strategies.messages import as_numpy, record, replies, reply


def test_sybils_get_zero_and_the_honest_client_full_weight() -> None:
    # Prepare: sybils 0 and 1 send the same update (1,1,0); honest 2 sends (1,0,1).
    # cos(s, s') = 1, cos(s, h) = 1/2; pardoning: cs_hs *= (1/2)/1 → 1/4.
    # α_s = 1 − 1 = 0, α_h = 1 − 1/4 = 3/4 → rescaled 1 → 0.99 → logit > 1 → 1.
    glob = [10.0, 20.0, 30.0]
    strategy = FoolsGold()
    strategy.set_global(record(glob))
    msgs = replies(1, {0: [1, 1, 0], 1: [1, 1, 0], 2: [1, 0, 1]}, glob)

    # Execute
    arrays, metrics = strategy.aggregate_train(1, msgs)

    # Assert: the aggregate is global + honest delta
    np.testing.assert_allclose(as_numpy(arrays), [11.0, 20.0, 31.0])
    assert strategy.last_weights == {0: 0.0, 1: 0.0, 2: 1.0}
    assert metrics is not None
    assert isinstance(strategy, NeedsGlobal)


def test_hand_computed_interior_weights_with_pardoning() -> None:
    # Prepare: a=(1,0), b=(0,1), c=(5,4).  cos(a,b)=0, cos(a,c)=5/√41, cos(b,c)=4/√41.
    # v = (5/√41, 4/√41, 5/√41); pardoning: cs_bc *= v_b/v_c = 4/5 → 16/(5√41).
    # α_a = α_c = 1 − 5/√41, α_b = 1 − 16/(5√41); rescaled by α_b:
    # r = α_a/α_b, weight = ln(r/(1−r)) + 0.5 (κ=1); α_b → 0.99 → clipped to 1.
    s41 = math.sqrt(41.0)
    alpha_a = 1 - 5 / s41
    alpha_b = 1 - 16 / (5 * s41)
    r = alpha_a / alpha_b
    w = math.log(r / (1 - r)) + 0.5
    assert 0 < w < 1  # the case exercises the logit's interior
    glob = [0.0, 0.0]
    strategy = FoolsGold()
    strategy.set_global(record(glob))
    msgs = replies(1, {0: [1, 0], 1: [0, 1], 2: [5, 4]}, glob)

    # Execute
    arrays, _ = strategy.aggregate_train(1, msgs)

    # Assert
    assert strategy.last_weights == pytest.approx({0: w, 1: 1.0, 2: w})
    expected = (w * np.array([1.0, 0.0]) + np.array([0.0, 1.0]) + w * np.array([5.0, 4.0])) / (
        2 * w + 1
    )
    np.testing.assert_allclose(as_numpy(arrays), expected, rtol=1e-12)


def test_kappa_scales_the_logit() -> None:
    # Same geometry as above with κ = 0.5: weight = 0.5 (ln(r/(1−r)) + 0.5).
    s41 = math.sqrt(41.0)
    r = (1 - 5 / s41) / (1 - 16 / (5 * s41))
    w = 0.5 * (math.log(r / (1 - r)) + 0.5)
    strategy = FoolsGold(kappa=0.5)
    strategy.set_global(record([0.0, 0.0]))

    strategy.aggregate_train(1, replies(1, {0: [1, 0], 1: [0, 1], 2: [5, 4]}, [0.0, 0.0]))

    assert strategy.last_weights[0] == pytest.approx(w)
    assert strategy.last_weights[1] == 1.0


def test_histories_accumulate_across_rounds() -> None:
    # Round 1: client 3 sends (1,0), client 7 sends (0,1): orthogonal, both α = 1.
    strategy = FoolsGold()
    g1 = [0.0, 0.0]
    strategy.set_global(record(g1))
    arrays1, _ = strategy.aggregate_train(1, replies(1, {3: [1, 0], 7: [0, 1]}, g1))
    g2 = as_numpy(arrays1).tolist()
    assert g2 == pytest.approx([0.5, 0.5])

    # Round 2: both send (0,1). Memoryless they would be sybils (α = 0, global kept);
    # with histories H_3 = (1,1), H_7 = (0,2): cos = 1/√2, symmetric → both α = 1.
    strategy.set_global(record(g2))
    arrays2, _ = strategy.aggregate_train(2, replies(2, {3: [0, 1], 7: [0, 1]}, g2))

    np.testing.assert_allclose(strategy.histories[3], [1.0, 1.0])
    np.testing.assert_allclose(strategy.histories[7], [0.0, 2.0])
    assert strategy.last_weights == {3: 1.0, 7: 1.0}
    np.testing.assert_allclose(as_numpy(arrays2), [0.5, 1.5])


def test_all_sybils_keep_the_global_model() -> None:
    glob = [1.0, 2.0]
    strategy = FoolsGold()
    strategy.set_global(record(glob))

    arrays, _ = strategy.aggregate_train(1, replies(1, {0: [3, 3], 1: [3, 3]}, glob))

    np.testing.assert_array_equal(as_numpy(arrays), glob)
    assert strategy.last_weights == {0: 0.0, 1: 0.0}


def test_a_single_client_gets_full_weight() -> None:
    strategy = FoolsGold()
    strategy.set_global(record([1.0]))

    arrays, _ = strategy.aggregate_train(1, replies(1, {5: [2.0]}, [1.0]))

    np.testing.assert_allclose(as_numpy(arrays), [3.0])
    assert strategy.last_weights == {5: 1.0}


def test_several_arrays_and_dtype_are_kept() -> None:
    # Prepare: two arrays, float32; honest client 2 is orthogonal to the sybils.
    glob = {"a": np.zeros((2, 2), np.float32), "b": np.ones(3, np.float32)}
    strategy = FoolsGold()
    strategy.set_global(ArrayRecord({k: Array(v) for k, v in glob.items()}))
    sybil = {"a": np.full((2, 2), 1, np.float32), "b": np.ones(3, np.float32)}
    honest = {"a": np.zeros((2, 2), np.float32), "b": np.array([1, 1, 5], np.float32)}
    msgs = [reply(1, 0, sybil), reply(1, 1, sybil), reply(1, 2, honest)]

    # Execute
    arrays, _ = strategy.aggregate_train(1, msgs)

    # Assert
    assert arrays is not None
    assert arrays["a"].numpy().dtype == np.float32
    np.testing.assert_array_equal(arrays["a"].numpy(), glob["a"])
    np.testing.assert_array_equal(arrays["b"].numpy(), honest["b"])


def test_aggregation_is_deterministic() -> None:
    rng = np.random.default_rng(7)
    glob = rng.normal(size=50).tolist()
    updates = {c: rng.normal(size=50).tolist() for c in range(6)}
    outs = []
    for _ in range(2):
        strategy = FoolsGold()
        strategy.set_global(record(glob))
        arrays, _ = strategy.aggregate_train(1, replies(1, updates, glob))
        outs.append((as_numpy(arrays).tobytes(), dict(strategy.last_weights)))

    assert outs[0] == outs[1]


def test_aggregate_without_the_global_model_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match="set_global"):
        FoolsGold().aggregate_train(1, replies(1, {0: [1.0]}, [0.0]))


def test_invalid_kappa_is_rejected() -> None:
    with pytest.raises(ValueError, match="kappa"):
        FoolsGold(kappa=0.0)
