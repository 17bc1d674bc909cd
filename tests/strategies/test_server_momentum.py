"""Server momentum after any aggregator (``aggregation.server_momentum``) and Krum's
recorded selection: hand-derived rounds, Flower's own FedAvgM as the reference for the
recursion, and Flower's own Krum for the aggregate."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.serverapp.strategy import FedAvg, FedAvgM
from flwr.serverapp.strategy import Krum as FlowerKrum

from simulation.fl.aggregation import create_strategy
from simulation.fl.strategies import FLOWER_BASE, Krum, ServerMomentum
from tests.strategies.messages import as_numpy, record, replies


def _round(strategy: ServerMomentum, round_: int, glob: float, deltas: list[float]) -> float:
    strategy.set_global(record([glob]))
    arrays, _ = strategy.aggregate_train(
        round_, replies(round_, {c: [d] for c, d in enumerate(deltas)}, [glob])
    )
    return float(as_numpy(arrays)[0])


def test_momentum_accumulates_the_aggregate_step_as_hand_derived() -> None:
    # beta = 0.5, equal example counts, so FedAvg's step is the mean delta.
    # r1: mean 2 -> v = 2, w = 0 + 2; r2: mean 0 -> v = 0.5*2 + 0 = 1, w = 3;
    # r3: mean 2 -> v = 0.5*1 + 2 = 2.5, w = 5.5.
    s = create_strategy("fedavg", {}, server_momentum=0.5)
    assert isinstance(s, ServerMomentum)
    assert _round(s, 1, 0.0, [1.0, 3.0]) == pytest.approx(2.0)
    assert _round(s, 2, 2.0, [-1.0, 1.0]) == pytest.approx(3.0)
    assert _round(s, 3, 3.0, [2.0, 2.0]) == pytest.approx(5.5)


def test_momentum_over_fedavg_matches_flowers_fedavgm() -> None:
    """Flower's FedAvgM (server lr 1) runs the same heavy-ball recursion over FedAvg."""
    rng = np.random.default_rng(3)
    ours = ServerMomentum(FedAvg(**FLOWER_BASE), 0.9)
    ref = FedAvgM(**FLOWER_BASE, server_learning_rate=1.0, server_momentum=0.9)
    glob = rng.normal(size=5)
    ref_glob = glob.copy()
    for round_ in range(1, 6):
        updates = {c: rng.normal(size=5) for c in range(4)}
        ours.set_global(record(glob.tolist()))
        ref.current_arrays = record(ref_glob.tolist())  # FedAvgM's own state of the model
        mine, _ = ours.aggregate_train(round_, replies(round_, updates, glob))
        theirs, _ = ref.aggregate_train(round_, replies(round_, updates, ref_glob))
        glob, ref_glob = as_numpy(mine), as_numpy(theirs)
        np.testing.assert_allclose(glob, ref_glob, rtol=1e-12, atol=1e-12)


def test_what_if_leaves_the_velocity_alone() -> None:
    s = create_strategy("fedmedian", {}, server_momentum=0.5)
    _round(s, 1, 0.0, [1.0, 2.0, 3.0])  # v = 2
    fork = s.what_if()
    _round(fork, 2, 2.0, [10.0, 10.0, 10.0])
    assert _round(s, 2, 2.0, [0.0, 0.0, 0.0]) == pytest.approx(3.0)  # 2 + 0.5*2


UPDATES = {0: [0.0], 1: [0.2], 2: [0.3], 3: [0.6], 4: [5.0]}


def test_krum_records_the_update_it_keeps_and_aggregates_as_flower() -> None:
    # n = 5, f = 1: each score sums the n - f - 2 = 2 nearest squared distances:
    # client 0: 0.04 + 0.09 = 0.13, client 1: 0.01 + 0.04 = 0.05, client 2: 0.01 + 0.09,
    # client 3: 0.09 + 0.16, client 4 far away. Client 1 wins.
    updates = UPDATES
    krum = create_strategy("krum", {"num_malicious_nodes": 1})
    assert isinstance(krum, Krum)
    mine, _ = krum.aggregate_train(1, replies(1, updates, [0.0]))
    theirs, _ = FlowerKrum(**FLOWER_BASE, num_malicious_nodes=1).aggregate_train(
        1, replies(1, updates, [0.0])
    )
    assert krum.last_selected == (1,)
    np.testing.assert_array_equal(as_numpy(mine), as_numpy(theirs))
    wrapped = create_strategy("krum", {"num_malicious_nodes": 1}, server_momentum=0.9)
    _round(wrapped, 1, 0.0, [u[0] for u in UPDATES.values()])
    assert wrapped.last_selected == (1,)


def test_multikrum_records_every_update_it_averages() -> None:
    # The two lowest scores above: clients 1 (0.05) and 2 (0.10).
    mk = create_strategy("multikrum", {"num_malicious_nodes": 1, "num_nodes_to_select": 2})
    mk.aggregate_train(1, replies(1, UPDATES, [0.0]))
    assert mk.last_selected == (1, 2)


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5])
def test_momentum_outside_the_unit_interval_is_refused(beta: float) -> None:
    with pytest.raises(ValueError, match="momentum"):
        ServerMomentum(FedAvg(**FLOWER_BASE), beta)


def test_momentum_with_client_dp_is_refused() -> None:
    dp = {"mode": "dp-fedavg", "noise_multiplier": 1.0, "clipping_norm": 1.0}
    with pytest.raises(ValueError, match="server_momentum"):
        create_strategy("fedavg", {}, dp, rng=np.random.default_rng(0), server_momentum=0.9)


def test_scenario_errors_name_the_momentum_field() -> None:
    from pathlib import Path

    from simulation.errors import ScenarioError
    from simulation.scenario.load import load_scenario

    baseline = Path(__file__).resolve().parents[2] / "scenarios" / "baseline.yaml"
    dp = [
        "aggregation.client_dp.mode=dp-fedavg",
        "aggregation.client_dp.noise_multiplier=1.2",
        "aggregation.client_dp.clipping_norm=2.0",
    ]
    with pytest.raises(ScenarioError) as err:
        load_scenario(baseline, [*dp, "aggregation.server_momentum=0.9"])
    [problem] = [p for p in err.value.problems if p.field == "aggregation.server_momentum"]
    assert "cannot be combined with aggregation.client_dp" in problem.reason
    with pytest.raises(ScenarioError) as err:
        load_scenario(baseline, ["aggregation.server_momentum=1.0"])
    assert any(p.field == "aggregation.server_momentum" for p in err.value.problems)
    assert (
        load_scenario(baseline, ["aggregation.server_momentum=0.9"]).aggregation.server_momentum
        == 0.9
    )
