"""FLTrust (Cao et al., NDSS 2021): hand-computed trust scores and aggregates."""

from __future__ import annotations

import numpy as np
import pytest

from simulation.fl.strategies import FLTrust
from tests.strategies.messages import as_numpy, record, replies


def _root(delta: list[float]):  # type: ignore[no-untyped-def]
    """A root update that moves the global model by ``delta``; records its calls."""
    calls: list[tuple[int, dict[str, np.ndarray]]] = []

    def fn(round_: int, glob: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append((round_, {k: v.copy() for k, v in glob.items()}))
        return {"w": glob["w"] + np.asarray(delta)}

    return fn, calls


def test_only_the_aligned_client_is_trusted() -> None:
    # Prepare: g0 = (1,0); clients (2,0), (0,5), (−1,0) → TS = 1, 0, 0.
    # ĝ_0 = (2,0)·‖g0‖/‖(2,0)‖ = (1,0) → aggregate = global + (1,0).
    glob = [10.0, 20.0]
    fn, calls = _root([1.0, 0.0])
    strategy = FLTrust(root_update=fn)
    strategy.set_global(record(glob))

    # Execute
    arrays, _ = strategy.aggregate_train(4, replies(4, {0: [2, 0], 1: [0, 5], 2: [-1, 0]}, glob))

    # Assert
    np.testing.assert_allclose(as_numpy(arrays), [11.0, 20.0])
    assert strategy.last_weights == {0: 1.0, 1: 0.0, 2: 0.0}
    assert len(calls) == 1 and calls[0][0] == 4
    np.testing.assert_array_equal(calls[0][1]["w"], glob)


def test_hand_computed_mixed_case() -> None:
    # Prepare: g0 = (3,4), ‖g0‖ = 5.
    # g1 = (4,3): cos = 24/25 = 0.96, ĝ1 = (4,3).
    # g2 = (0,2): cos = 8/10 = 0.8,   ĝ2 = (0,2)·5/2 = (0,5).
    # g3 = (−3,−4): cos = −1 → TS = 0.
    # aggregate = (0.96·(4,3) + 0.8·(0,5)) / 1.76 = (3.84, 6.88) / 1.76.
    fn, _ = _root([3.0, 4.0])
    strategy = FLTrust()
    strategy.set_root_update(fn)
    strategy.set_global(record([0.0, 0.0]))

    # Execute
    arrays, _ = strategy.aggregate_train(
        1, replies(1, {1: [4, 3], 2: [0, 2], 3: [-3, -4]}, [0.0, 0.0])
    )

    # Assert
    np.testing.assert_allclose(as_numpy(arrays), [3.84 / 1.76, 6.88 / 1.76], rtol=1e-12)
    assert strategy.last_weights == pytest.approx({1: 0.96, 2: 0.8, 3: 0.0})


def test_server_learning_rate_scales_the_step() -> None:
    fn, _ = _root([1.0, 0.0])
    strategy = FLTrust(root_update=fn, server_lr=0.5)
    strategy.set_global(record([0.0, 0.0]))

    arrays, _ = strategy.aggregate_train(1, replies(1, {0: [2, 0]}, [0.0, 0.0]))

    np.testing.assert_allclose(as_numpy(arrays), [0.5, 0.0])


def test_no_trusted_client_keeps_the_global_model() -> None:
    # Opposed and zero updates both score 0.
    fn, _ = _root([1.0, 1.0])
    strategy = FLTrust(root_update=fn)
    strategy.set_global(record([5.0, 6.0]))

    arrays, _ = strategy.aggregate_train(1, replies(1, {0: [-1, -1], 1: [0, 0]}, [5.0, 6.0]))

    np.testing.assert_array_equal(as_numpy(arrays), [5.0, 6.0])
    assert strategy.last_weights == {0: 0.0, 1: 0.0}


def test_aggregation_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    glob = rng.normal(size=40).tolist()
    root = rng.normal(size=40).tolist()
    updates = {c: rng.normal(size=40).tolist() for c in range(5)}
    outs = []
    for _ in range(2):
        fn, _ = _root(root)
        strategy = FLTrust(root_update=fn)
        strategy.set_global(record(glob))
        arrays, _ = strategy.aggregate_train(1, replies(1, updates, glob))
        outs.append((as_numpy(arrays).tobytes(), dict(strategy.last_weights)))

    assert outs[0] == outs[1]


def test_missing_hooks_fail_loudly() -> None:
    with pytest.raises(RuntimeError, match="root update"):
        strategy = FLTrust()
        strategy.set_global(record([0.0]))
        strategy.aggregate_train(1, replies(1, {0: [1.0]}, [0.0]))
    fn, _ = _root([1.0])
    with pytest.raises(RuntimeError, match="set_global"):
        FLTrust(root_update=fn).aggregate_train(1, replies(1, {0: [1.0]}, [0.0]))


def test_clients_all_equal_move_by_the_root_norm() -> None:
    # FLTrust Algorithm 1 by hand: g0 = (0, 2), every client sends g = (0, 6).
    # cos = 1 → TS = 1 each; ĝ = g · ‖g0‖/‖g‖ = (0, 2); Σ TS ĝ / Σ TS = (0, 2).
    glob = [1.0, 1.0]
    strategy = FLTrust(root_update=_root([0.0, 2.0])[0])
    strategy.set_global(record(glob))

    arrays, _ = strategy.aggregate_train(1, replies(1, {0: [0, 6], 1: [0, 6], 2: [0, 6]}, glob))

    np.testing.assert_allclose(as_numpy(arrays), [1.0, 3.0], rtol=1e-12)
    assert strategy.last_weights == {0: 1.0, 1: 1.0, 2: 1.0}
