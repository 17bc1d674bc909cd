"""The ServerApp and ClientApp are an ordinary Flower App, loadable the way `flwr run` does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.supercore.object_ref import load_app

from simulation.engine.runner import quiet_environment
from simulation.engine.server_app import CLIENT_START_TIMEOUT_ENV, discover_nodes
from simulation.errors import RunError

ROOT = Path(__file__).resolve().parents[2]


def test_components_declared_in_pyproject_load_with_flowers_loader() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    components = config["tool"]["flwr"]["app"]["components"]
    server = load_app(components["serverapp"], RuntimeError, ROOT)
    client = load_app(components["clientapp"], RuntimeError, ROOT)
    assert isinstance(server, ServerApp)
    assert isinstance(client, ClientApp)
    run_config = config["tool"]["flwr"]["app"]["config"]
    assert (ROOT / run_config["scenario"]).exists()


def test_the_app_fedmarket_submits_is_the_one_pyproject_declares() -> None:
    from simulation.engine.superlink import CLIENT_APP, FAB_PYPROJECT, SERVER_APP

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]
    submitted = tomllib.loads(FAB_PYPROJECT)["tool"]["flwr"]
    assert declared["app"]["components"] == {"serverapp": SERVER_APP, "clientapp": CLIENT_APP}
    assert submitted["app"]["components"] == declared["app"]["components"]
    # The keyring's file (never its secret) is handed to the ServerApp by path;
    # node-signed: the SuperNodes sign their own contributions (`flwr run` too);
    # data: the federated data the driver built (simulation.fl.data_file).
    assert set(submitted["app"]["config"]) == {
        "scenario", "out", "channel", "keyring", "node-signed", "data"
    }  # fmt: skip
    assert "node-signed" in declared["app"]["config"]
    # A [tool.flwr.federations] table makes `flwr run .` rewrite pyproject.toml.
    assert "federations" not in declared


def test_loading_the_client_app_imports_no_torch() -> None:
    """flwr-simulation loads the ClientApp (to check it loads) before it connects to Ray
    and starts the actors: torch there would delay every actor's start."""
    probe = (
        "import sys; import simulation.fl.client_app; "
        "print(sorted(m for m in ('torch', 'opacus', 'marketplace.ledger') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_console_script_points_at_the_cli() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["scripts"]["fedmarket"] == "simulation.cli.main:main"
    assert set(config["project"]["optional-dependencies"]) >= {"dev"}


class _Grid:
    """Just enough of a Flower ``Grid`` for node discovery: ``answering`` maps
    node id → partition id of the nodes that reply in time."""

    def __init__(self, answering: dict[int, int], nodes: int) -> None:
        self.answering = answering
        self.nodes = nodes
        self.sent: list[Any] = []

    def get_node_ids(self) -> list[int]:
        return list(range(100, 100 + self.nodes))

    def push_messages(self, msgs: list[Any]) -> list[str]:
        self.sent = list(msgs)
        return [str(m.metadata.dst_node_id) for m in msgs]

    def pull_messages(self, ids: list[str]) -> list[Any]:
        return [
            SimpleNamespace(
                has_error=lambda: False,
                metadata=SimpleNamespace(src_node_id=int(i), reply_to_message_id=i),
                content={"config": {"partition-id": self.answering[int(i)]}},
            )
            for i in ids
            if int(i) in self.answering
        ]


@pytest.fixture
def run_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps each Message with the running task's run id; outside a run
    there is none, so give the process one (with a task and the server node id)."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


@pytest.mark.usefixtures("run_identity")
def test_discovery_maps_partitions_to_nodes() -> None:
    grid = _Grid({100: 1, 101: 0, 102: 2}, nodes=3)
    assert discover_nodes(grid, 3, timeout=30.0) == {0: 101, 1: 100, 2: 102}  # type: ignore[arg-type]
    assert len(grid.sent) == 3


@pytest.mark.usefixtures("run_identity")
def test_discovery_says_how_many_clients_never_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLIENT_START_TIMEOUT_ENV, "1.5")
    grid = _Grid({100: 0, 102: 2}, nodes=3)
    started = time.monotonic()
    with pytest.raises(
        RunError,
        match=f"only 2 of 3 simulated clients answered within 1.5 s.*{CLIENT_START_TIMEOUT_ENV}",
    ):
        discover_nodes(grid, 3)  # type: ignore[arg-type]
    assert 1.0 <= time.monotonic() - started < 30.0
    monkeypatch.setenv(CLIENT_START_TIMEOUT_ENV, "soon")
    with pytest.raises(RunError, match="expected a positive number of seconds"):
        discover_nodes(grid, 3)  # type: ignore[arg-type]


@pytest.mark.slow
def test_ray_workers_run_at_normal_priority() -> None:
    """Ray renices workers to 15 unless told otherwise; the simulated clients are
    Ray workers and must not starve whenever anything else runs on the machine."""
    import ray

    quiet_environment()
    ray_tmp = tempfile.mkdtemp(prefix="fm-ray-", dir="/tmp")  # short: Ray's sockets live there
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=ray_tmp, log_to_driver=False)
    try:

        @ray.remote
        def niceness() -> int:
            return os.nice(0)

        assert ray.get(niceness.remote(), timeout=300) == os.nice(0)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
