"""The Flower ServerApp: builds the market world and drives it through the ``Grid``.

One ``app`` serves both ways of running it. ``fedmarket run --engine flower``
submits it to its own SuperLink with the run config ``channel`` set: the
scenario is read from, and the result written to, that directory
(``simulation.engine.channel``). ``flwr run .`` leaves ``channel`` empty: the
scenario is the ``scenario`` path of the run config and the results are
written to ``out``, as ``fedmarket run`` would write them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from marketplace.keyring import Keyring
from simulation.config.schema import DPSGDPrivacy, Scenario
from simulation.engine.channel import RunChannel
from simulation.engine.replies import (
    Collected,
    StopCheck,
    judge_round,
    never,
    push,
    wait_for_replies,
)
from simulation.errors import RunError, RunInterrupted
from simulation.fl.data_file import RUN_CONFIG_KEY
from simulation.fl.messages import QUERY_DP_SGD
from simulation.scenario.load import load_scenario

if TYPE_CHECKING:
    # The world (torch and all) is imported once the nodes have been queried.
    from simulation.fl.training import ClientTask
    from simulation.world.records import Reply, RoundRecord, Weights, WorldResult

log = logging.getLogger("fedmarket.server")

NODE_SIGNED = "node-signed"
"""Run config key: ``true`` when each SuperNode signs its own contributions (the
Deployment Engine; its nodes have a ``keyring-path`` in their node config)."""

CLIENT_START_TIMEOUT_ENV = "FEDMARKET_CLIENT_START_TIMEOUT"
"""Seconds to wait for every simulated client to come up and answer (default 600)."""


def _start_timeout() -> float:
    raw = os.environ.get(CLIENT_START_TIMEOUT_ENV, "600")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise RunError(f"{CLIENT_START_TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


@dataclass
class NodeDiscovery:
    """Queries sent to every node, to map partition ids to Flower node ids.

    The first message a simulated client gets waits for Ray to start its actor
    and import torch; the server builds its world meanwhile (``serve``) and
    collects the answers with ``finish``.
    """

    grid: Grid
    expected: int
    deadline: float
    timeout: float
    queries: Collected

    @classmethod
    def start(
        cls,
        grid: Grid,
        expected: int,
        timeout: float | None = None,
        should_stop: StopCheck = never,
        dp_sgd: bool = False,
    ) -> NodeDiscovery:
        """Wait for ``expected`` nodes to register and send each a query (``dp_sgd``: the
        run trains with DP-SGD, so a client may import Opacus while it waits for its
        first task; ``simulation.fl.messages.QUERY_DP_SGD``)."""
        if timeout is None:
            timeout = _start_timeout()
        deadline = time.monotonic() + timeout
        node_ids = sorted(grid.get_node_ids())
        while len(node_ids) < expected:
            if time.monotonic() > deadline:
                raise RunError(f"only {len(node_ids)} of {expected} simulated clients came up")
            if should_stop():
                raise RunInterrupted("stop requested")
            time.sleep(0.05)
            node_ids = sorted(grid.get_node_ids())
        msgs = [
            Message(
                RecordDict({"config": ConfigRecord({QUERY_DP_SGD: dp_sgd})}),
                dst_node_id=nid,
                message_type=MessageType.QUERY,
            )
            for nid in node_ids
        ]
        return cls(grid, expected, deadline, timeout, push(grid, msgs))

    def finish(self, should_stop: StopCheck = never) -> dict[int, int]:
        """Partition id → node id, once every node has answered (or a ``RunError``)."""
        remaining = max(self.deadline - time.monotonic(), 1.0)
        got = wait_for_replies(self.grid, self.queries, timeout=remaining, should_stop=should_stop)
        out: dict[int, int] = {}
        for replies in got.replies.values():
            reply = replies[0]
            if reply.has_error():
                raise RunError(f"node {reply.metadata.src_node_id} failed: {reply.error.reason}")
            partition = reply.content["config"]["partition-id"]
            out[int(partition)] = reply.metadata.src_node_id  # type: ignore[arg-type]
        sent = len(got.sent) + len(got.undelivered)
        if len(out) < sent:
            raise RunError(
                f"only {len(out)} of {sent} simulated clients answered within "
                f"{self.timeout:g} s; on a slow or busy machine set "
                f"{CLIENT_START_TIMEOUT_ENV} to wait longer"
            )
        if sorted(out) != list(range(self.expected)):
            raise RunError(
                f"nodes reported partitions {sorted(out)}, expected 0..{self.expected - 1}"
            )
        return out


def discover_nodes(
    grid: Grid,
    expected: int,
    timeout: float | None = None,
    should_stop: StopCheck = never,
) -> dict[int, int]:
    """Map partition id → Flower node id by asking every node (a query message);
    ``timeout`` defaults to ``$FEDMARKET_CLIENT_START_TIMEOUT`` or 600 s."""
    return NodeDiscovery.start(grid, expected, timeout, should_stop).finish(should_stop)


@dataclass
class GridTransport:
    """Sends ``ClientTask`` messages over Flower and judges what comes back.

    Every task gets a ``Reply``: the update, or a rejection (the client
    errored, hung past ``timeout`` seconds, or broke the protocol; see
    ``simulation.engine.replies``), which the world records on the ledger.
    ``node_of`` (partition → node id) may be filled in after construction.
    """

    grid: Grid
    timeout: float
    should_stop: StopCheck = never
    node_of: dict[int, int] = field(default_factory=dict)

    def __call__(self, tasks: list[ClientTask], weights: Weights) -> list[Reply]:
        arrays = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()})
        msgs = [
            Message(
                RecordDict(
                    {"arrays": arrays, "config": ConfigRecord({"task": t.model_dump_json()})}
                ),
                dst_node_id=self.node_of[t.client_index],
                message_type=MessageType.TRAIN,
            )
            for t in tasks
        ]
        got = wait_for_replies(self.grid, msgs, timeout=self.timeout, should_stop=self.should_stop)
        client_of_node = {nid: c for c, nid in self.node_of.items()}
        return judge_round(
            got, lambda m: client_of_node[m.metadata.dst_node_id], client_of_node, self.timeout
        )


def serve(
    grid: Grid,
    scenario: Scenario,
    out_dir: Path,
    on_round: Callable[[RoundRecord], None] | None = None,
    should_stop: StopCheck = never,
    keyring: Keyring | None = None,
    node_signed: bool = False,
) -> WorldResult:
    """The body of the ServerApp: query the nodes, build the world while they start
    up, then run it (signing its ledger with ``keyring``, default: the user's;
    ``node_signed``: each node signs its own contributions with its own key)."""
    discovery = NodeDiscovery.start(
        grid,
        scenario.clients.count,
        should_stop=should_stop,
        dp_sgd=isinstance(scenario.privacy, DPSGDPrivacy),
    )
    log.debug("queried %d nodes", scenario.clients.count)
    from simulation.world.core import World  # the clients import torch meanwhile

    transport = GridTransport(grid, scenario.resources.round_timeout_s, should_stop)
    world = World(
        scenario, out_dir, transport, on_round=on_round, keyring=keyring, node_signed=node_signed
    )
    log.debug("world built; waiting for the nodes to answer")
    transport.node_of = discovery.finish(should_stop)
    log.debug("every node answered")
    return world.run()


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point on a SuperLink: ``fedmarket run`` (run config ``channel``) or ``flwr run``."""
    out_dir = Path(str(context.run_config["out"])).expanduser()
    channel = str(context.run_config.get("channel", ""))
    node_signed = str(context.run_config.get(NODE_SIGNED, "")).lower() == "true"
    if channel:
        keyring = Path(str(context.run_config.get("keyring", "")))
        data_file = str(context.run_config.get(RUN_CONFIG_KEY, ""))
        _serve_channel(grid, RunChannel(Path(channel)), out_dir, keyring, node_signed, data_file)
        return
    from simulation.results.write import write_results

    scenario = load_scenario(Path(str(context.run_config["scenario"])).expanduser())
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    keyring = Keyring.load_or_create()  # $FEDMARKET_KEYRING or the user's keyring
    result = serve(grid, scenario, out_dir, keyring=keyring, node_signed=node_signed)
    write_results(scenario, out_dir, result, wall_seconds=time.time() - started, keyring=keyring)
    log.info("results written to %s", out_dir.resolve())


def _serve_channel(
    grid: Grid,
    channel: RunChannel,
    out_dir: Path,
    keyring: Path,
    node_signed: bool,
    data_file: str = "",
) -> None:
    """Run for ``fedmarket run``: scenario in, rounds, logs and the result out, as files;
    ``data_file`` holds the federated data the driver built (``fl.data_file``), if any."""
    logger = logging.getLogger("fedmarket")
    handler = channel.log_handler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        scenario = load_scenario(channel.scenario)
        if data_file:
            from simulation.fl.training import DataSpec

            DataSpec.of(scenario).preload(Path(data_file))  # the driver built it
        signer = Keyring.load(keyring)
        result = serve(
            grid,
            scenario,
            out_dir,
            channel.write_round,
            channel.stop_requested,
            keyring=signer,
            node_signed=node_signed,
        )
    except RunInterrupted as exc:
        channel.write_failure("interrupted", str(exc))
        return
    except RunError as exc:
        channel.write_failure("error", str(exc))
        return
    except Exception as exc:
        log.exception("the ServerApp failed")
        channel.write_failure("error", f"the ServerApp failed: {type(exc).__name__}: {exc}")
        return
    finally:
        logger.removeHandler(handler)
    channel.write_result(result)
