"""``--engine deployment``: the scenario on Flower's Deployment Engine, real SuperNodes.

Where ``--engine flower`` runs the clients in Flower's simulation runtime (Ray
actors inside one SuperLink), this engine starts what a real federation runs:

* ``flower-superlink`` *without* ``--simulation`` (``LocalSuperLink.start(...,
  simulation=False)``): its Fleet, Control and ServerAppIo APIs on one free
  127.0.0.1 port, insecure because it is loopback only (``docs/deployment.md``
  shows TLS and node authentication for real hosts);
* one ``flower-supernode`` per client, each its own participant: its own
  ``--node-config`` (``partition-id``, ``num-partitions`` and ``data-path``,
  the file holding *only its own partition*, ``simulation.fl.own_data``), its
  own ClientAppIo port (``--port``; the default 9094 would collide), and its
  own ``FLWR_HOME`` in the run's temporary folder. SuperNodes install no
  runtime dependencies unless ``--allow-runtime-dependency-installation`` is
  given (it is not); the SuperLink gets ``--disable-runtime-dependency-installation``.

The client-side behaviours a task names (label flipping, free-riding, noise,
backdoor, faults) run in the node's ClientApp on its own rows. What needs the
server's view of several clients' submissions cannot happen on a participant:
coalition attacks (``timeline`` events of kind ``coalition``) and Sybil groups
(one owner's rows spread over several identities) are a scenario error here,
naming them (:func:`check_deployable`).

The ServerApp is the same as for ``--engine flower`` (``server_app.py``): it
maps partitions to Flower node ids by querying the nodes, keeps the ledger in
``out_dir`` and talks to this process through a ``RunChannel``. Every process
runs under ``simulation.engine.watchdog`` and is stopped, and checked by pid,
however the run ends; the temporary folder is removed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from simulation.config.schema import CoalitionEvent, Scenario
from simulation.engine.run_dir import ENGINE_LOGS, RunDir, Started, keep_logs, run_on_superlink
from simulation.engine.server_app import NODE_SIGNED
from simulation.engine.stop import StopRequest
from simulation.engine.superlink import LocalSuperLink, _bin, free_port
from simulation.engine.watchdog import Supervised
from simulation.errors import Problem, ScenarioError

if TYPE_CHECKING:
    from marketplace.keyring import Keyring
    from simulation.world.records import RoundRecord, WorldResult

log = logging.getLogger("fedmarket.deployment")

__all__ = ["ENGINE_LOGS", "check_deployable", "node_config", "run_deployment", "supernode_argv"]


def check_deployable(scenario: Scenario) -> None:
    """Refuse what no participant can do on its own host (a ``ScenarioError`` naming it)."""
    problems = [
        Problem(
            "scenario",
            f"timeline[{i}]",
            f"coalition attack {e.attack!r} of group {e.group!r} rewrites submissions on "
            "the server; on the Deployment Engine each node sends only its own update",
        )
        for i, e in enumerate(scenario.timeline)
        if isinstance(e, CoalitionEvent)
    ]
    problems += [
        Problem(
            "scenario",
            f"population[{i}].sybil",
            f"Sybil group {g.group!r} ({g.sybil}) trains identities on one owner's rows; "
            "on the Deployment Engine each node holds only its own partition",
        )
        for i, g in enumerate(scenario.population)
        if g.sybil is not None
    ]
    if problems:
        raise ScenarioError(problems)


def node_config(
    partition_id: int, num_partitions: int, data_path: Path, keyring: Path | None = None
) -> str:
    """The ``--node-config`` value of one SuperNode (Flower's ``key=value`` list);
    ``keyring`` is the participant's keyring file, which signs its contributions."""
    out = (
        f"partition-id={partition_id} num-partitions={num_partitions} "
        f"data-path={json.dumps(str(data_path))}"
    )
    return out if keyring is None else f"{out} keyring-path={json.dumps(str(keyring))}"


def supernode_argv(
    superlink: str,
    partition_id: int,
    num_partitions: int,
    data_path: Path,
    clientappio_port: int,
    *,
    tls: Sequence[str] = ("--insecure",),
    keyring: Path | None = None,
) -> list[str]:
    """``flower-supernode`` for one participant; ``tls`` is ``--insecure`` on loopback,
    or e.g. ``--root-certificates CA --auth-supernode-private-key KEY`` on real hosts."""
    return [
        _bin("flower-supernode"),
        *tls,
        f"--superlink={superlink}",
        f"--node-config={node_config(partition_id, num_partitions, data_path, keyring)}",
        "--host=127.0.0.1",
        f"--port={clientappio_port}",
    ]


@dataclass
class LocalSuperNode:
    """One running ``flower-supernode`` (a participant) on this host."""

    partition_id: int
    process: Supervised
    log_path: Path

    @classmethod
    def start(
        cls, workdir: Path, superlink: str, partition_id: int, num_partitions: int,
        data_path: Path, env: Mapping[str, str], keyring: Path,
    ) -> LocalSuperNode:  # fmt: skip
        home = workdir / "flwr"
        home.mkdir(parents=True, exist_ok=True)
        node_env = {**env, "FLWR_HOME": str(home)}
        argv = supernode_argv(
            superlink, partition_id, num_partitions, data_path, free_port(), keyring=keyring
        )
        log_path = workdir / "supernode.log"
        proc = Supervised.start(
            argv, env=node_env, log=log_path, name=f"flower-supernode {partition_id}"
        )
        return cls(partition_id, proc, log_path)


def write_partitions(scenario: Scenario, nodes_dir: Path) -> list[Path]:
    """Each participant's own partition file (``nodes/<i>/partition.npz``)."""
    from simulation.fl.own_data import OwnPartition
    from simulation.fl.training import DataSpec

    data = DataSpec.of(scenario).build()  # memoised: the driver built it already
    return [
        OwnPartition.of(data, i).save(nodes_dir / str(i) / "partition.npz")
        for i in range(scenario.clients.count)
    ]


def run_deployment(
    scenario: Scenario,
    out_dir: Path,
    *,
    verbose: bool,
    on_round: Callable[[RoundRecord], None] | None,
    stop: StopRequest,
    keyring: Keyring,
) -> WorldResult:
    """Run ``scenario`` on a local SuperLink and one SuperNode per client; the result."""
    check_deployable(scenario)
    launcher = _DeploymentLauncher(scenario)
    return run_on_superlink(
        scenario, out_dir, launcher, on_round=on_round, stop=stop, keyring=keyring
    )


@dataclass
class _DeploymentLauncher:
    """A ``flower-superlink`` without simulation and one ``flower-supernode`` per client."""

    scenario: Scenario
    prefix: str = "fm-dep-"

    def start(self, run: RunDir) -> Started:
        run.data()  # every node's partition is cut from it before any process starts
        paths = write_partitions(self.scenario, run.workdir / "nodes")
        link = LocalSuperLink.start(run.workdir, run.env, simulation=False)
        run.processes.append(link.process)
        address = f"127.0.0.1:{link.port}"
        nodes: list[LocalSuperNode] = []
        for i, path in enumerate(paths):
            # On loopback every participant reads the one keyring file, as each would
            # read its own on its host (`fedmarket deploy supernode --keyring`).
            node = LocalSuperNode.start(
                path.parent, address, i, len(paths), path, run.env, run.keyring_file
            )
            nodes.append(node)
            run.processes.append(node.process)
        log.debug("SuperLink on %s, %d SuperNodes", address, len(nodes))
        return Started(link, DropOuts(nodes), None, {NODE_SIGNED: "true"})

    def keep_logs(self, workdir: Path, out_dir: Path) -> Path:
        """The SuperLink's and every SuperNode's log beside the partial results."""
        logs = {"superlink.log": workdir / "superlink.log"}
        for path in sorted((workdir / "nodes").glob("*/supernode.log")):
            logs[f"supernode-{path.parent.name}.log"] = path
        return keep_logs(out_dir, logs)


@dataclass
class DropOuts:
    """Watches the SuperNodes for ``run_dir.follow``: a participant that exits is
    logged once and the run goes on (its tasks time out and are recorded, as on a
    real federation), so this never reports the run dead."""

    nodes: list[LocalSuperNode]
    gone: set[int] = field(default_factory=set)

    def running(self) -> bool:
        for n in self.nodes:
            if n.partition_id not in self.gone and not n.process.running():
                self.gone.add(n.partition_id)
                log.warning("the SuperNode of partition %d exited", n.partition_id)
        return True
