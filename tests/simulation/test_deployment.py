"""The Deployment Engine's pieces without Flower processes: what a scenario may do
there, each node's own partition, its node config, and its per-node state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, RecordDict

from simulation.engine.deployment import check_deployable, node_config, supernode_argv
from simulation.errors import ScenarioError
from simulation.fl.client_app import NODE_STATE, _check_fresh_round, _own_partition
from simulation.fl.own_data import OwnPartition
from simulation.fl.training import ClientTask, DataSpec, run_client_task
from simulation.scenario.load import load_scenario
from tests.keyring import KEYRING_FILE

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def test_server_side_behaviours_are_a_scenario_error_naming_them() -> None:
    with pytest.raises(ScenarioError) as exc:
        check_deployable(load_scenario(SCENARIOS / "alie.yaml"))
    [p] = exc.value.problems
    assert p.field == "timeline[0]" and "'alie'" in p.reason and "'colluders'" in p.reason
    with pytest.raises(ScenarioError) as exc:
        check_deployable(load_scenario(SCENARIOS / "sybil.yaml"))
    [p] = exc.value.problems
    assert p.field == "population[0].sybil" and "'sybils'" in p.reason


@pytest.mark.parametrize(
    "name", ["label_flipping", "backdoor", "free_riders", "gaussian_byzantine", "quickstart"]
)
def test_client_side_behaviours_are_deployable(name: str) -> None:
    check_deployable(load_scenario(SCENARIOS / f"{name}.yaml"))  # raises nothing


def small_scenario() -> DataSpec:
    scenario = load_scenario(
        SCENARIOS / "quickstart.yaml",
        ["clients.count=3", "model.name=logreg", "privacy={mode: none}", "training.epochs=1"],
    )
    return DataSpec.of(scenario)


def test_a_node_file_holds_exactly_its_partition(tmp_path: Path) -> None:
    data = small_scenario().build()
    path = OwnPartition.of(data, 1).save(tmp_path / "p.npz")
    own = OwnPartition.load(path)
    x, y = data.client(1)
    assert (own.partition_id, own.num_partitions) == (1, 3)
    assert own.x.dtype == x.dtype and np.array_equal(own.x, x) and np.array_equal(own.y, y)
    assert len(own.y) == len(data.partitions[1]) < len(data.y_train)
    assert (own.num_classes, own.input_shape) == (data.num_classes, tuple(data.input_shape))
    with pytest.raises(ValueError, match="partition-id 3"):
        OwnPartition.of(data, 3)


def task_for(spec: DataSpec, client: int, round_: int = 1) -> ClientTask:
    scenario = load_scenario(
        SCENARIOS / "quickstart.yaml", ["model.name=logreg", "training.epochs=1"]
    )
    return ClientTask(
        round=round_,
        client_index=client,
        account=f"client-{client:03d}",
        data=spec,
        model=scenario.model,
        training=scenario.training,
        dp=None,
        seed=7,
    )


def test_training_on_the_own_file_equals_training_on_the_rebuilt_data(tmp_path: Path) -> None:
    spec = small_scenario()
    data = spec.build()
    own = OwnPartition.load(OwnPartition.of(data, 2).save(tmp_path / "p.npz"))
    import torch

    from simulation.fl.models import build_model, state_to_numpy

    model = build_model(
        task_for(spec, 2).model, data.input_shape, data.num_classes, torch.Generator()
    )
    start = state_to_numpy(model)
    a = run_client_task(task_for(spec, 2), start)
    b = run_client_task(task_for(spec, 2), start, own)
    assert a.num_examples == b.num_examples == len(data.partitions[2])
    for k in a.weights:
        assert np.array_equal(a.weights[k], b.weights[k])
    with pytest.raises(ValueError, match="client 0 reached the node holding partition 2"):
        run_client_task(task_for(spec, 0), start, own)


def context(config: dict[str, bool | float | int | str]) -> Context:
    return Context(run_id=1, node_id=5, node_config=config, state=RecordDict(), run_config={})


def test_a_node_reads_its_file_and_refuses_another_nodes(tmp_path: Path) -> None:
    path = OwnPartition.of(small_scenario().build(), 0).save(tmp_path / "p.npz")
    assert _own_partition(context({"partition-id": 0})) is None  # Simulation Engine
    own = _own_partition(context({"partition-id": 0, "data-path": str(path)}))
    assert own is not None and own.partition_id == 0
    with pytest.raises(ValueError, match="holds partition 0, not this node's"):
        _own_partition(context({"partition-id": 1, "data-path": str(path)}))


def test_a_node_trains_each_round_once() -> None:
    ctx = context({})
    _check_fresh_round(ctx, 1)  # nothing trained yet
    ctx.state[NODE_STATE] = ConfigRecord({"last-round": 2})
    _check_fresh_round(ctx, 3)
    for replayed in (1, 2):
        with pytest.raises(ValueError, match=f"round {replayed} after round 2"):
            _check_fresh_round(ctx, replayed)


def test_node_config_and_argv_give_each_node_its_own_port_and_partition(tmp_path: Path) -> None:
    path = tmp_path / "my dir" / "partition.npz"
    assert node_config(2, 3, path) == f'partition-id=2 num-partitions=3 data-path="{path}"'
    argv = supernode_argv("127.0.0.1:9", 2, 3, path, 40123)
    assert argv[1:] == [
        "--insecure",
        "--superlink=127.0.0.1:9",
        f'--node-config=partition-id=2 num-partitions=3 data-path="{path}"',
        "--host=127.0.0.1",
        "--port=40123",
    ]
    assert argv[0].endswith("flower-supernode")


def test_the_remote_helper_writes_its_own_partition_and_refuses_insecure_remote_links(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from simulation.cli.main import app

    base = ["deploy", "supernode", str(SCENARIOS / "quickstart.yaml"), "--partition-id", "4"]
    node = ["--data-dir", str(tmp_path / "n4"), "--dry-run", "--set", "clients.count=5"]
    res = CliRunner().invoke(app, [*base, "--superlink", "10.1.2.3:9092", "--insecure", *node])
    assert res.exit_code == 2 and "10.1.2.3:9092 is not on loopback" in res.output
    res = CliRunner().invoke(app, [*base, "--superlink", "10.1.2.3:9092", *node])
    assert res.exit_code == 2 and "--root-certificates: required" in res.output
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed here: flower-supernode reads it")
    res = CliRunner().invoke(
        app, [*base, "--superlink", "link.example:9092", "--root-certificates", str(ca), *node]
    )
    assert res.exit_code == 0, res.output
    assert f"--root-certificates={ca} --superlink=link.example:9092" in res.output
    assert "partition-id=4 num-partitions=5" in res.output
    # It signs its contributions with its own keyring ($FEDMARKET_KEYRING in tests).
    assert f"keyring-path={json.dumps(str(KEYRING_FILE))}" in res.output
    res = CliRunner().invoke(
        app, [*base, "--superlink", "127.0.0.1:9092", "--insecure", "--keyring",
              str(tmp_path / "none"), *node],
    )  # fmt: skip
    assert res.exit_code == 2 and f"--keyring: {tmp_path / 'none'}: no keyring file" in res.output
    own = OwnPartition.load(tmp_path / "n4" / "partition.npz")
    scenario = load_scenario(SCENARIOS / "quickstart.yaml", ["clients.count=5"])
    assert np.array_equal(own.y, DataSpec.of(scenario).build().client(4)[1])


def test_run_refuses_a_coalition_scenario_on_the_deployment_engine(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from simulation.cli.main import app

    out = tmp_path / "run"
    res = CliRunner().invoke(
        app, ["run", str(SCENARIOS / "stale_replay.yaml"), "--out", str(out), "--engine",
              "deployment"],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "timeline[0] -> coalition attack 'stale_replay' of group 'replayers'" in res.output
    assert not out.exists()  # refused before anything was written or started
