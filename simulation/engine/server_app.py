"""The Flower ServerApp: builds the market world and drives it through the ``Grid``.

``make_server_app(scenario, out_dir)`` is what ``fedmarket run`` uses; the
module-level ``app`` is the same thing for ``flwr run`` (it reads ``scenario``
and ``out`` from the run config declared in ``pyproject.toml``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from marketplace.keyring import Keyring
from simulation.config.schema import Scenario
from simulation.errors import RunError
from simulation.fl.training import ClientTask
from simulation.scenario.load import load_scenario
from simulation.world.core import Reply, RoundRecord, Transport, Weights, World, WorldResult

log = logging.getLogger("fedmarket.server")


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


def discover_nodes(grid: Grid, expected: int, timeout: float | None = None) -> dict[int, int]:
    """Map partition id → Flower node id by asking every node (a query message).

    The first message to each client waits for Ray to start its actor and
    import torch, which on a slow or busy machine takes minutes; ``timeout``
    (default: ``$FEDMARKET_CLIENT_START_TIMEOUT`` or 600 s) bounds the wait.
    """
    if timeout is None:
        timeout = _start_timeout()
    deadline = time.monotonic() + timeout
    node_ids = sorted(grid.get_node_ids())
    while len(node_ids) < expected:
        if time.monotonic() > deadline:
            raise RunError(f"only {len(node_ids)} of {expected} simulated clients came up")
        time.sleep(0.05)
        node_ids = sorted(grid.get_node_ids())
    msgs = [
        Message(
            RecordDict({"config": ConfigRecord({})}),
            dst_node_id=nid,
            message_type=MessageType.QUERY,
        )
        for nid in node_ids
    ]
    out: dict[int, int] = {}
    remaining = max(deadline - time.monotonic(), 1.0)
    for reply in grid.send_and_receive(msgs, timeout=remaining):
        if reply.has_error():
            raise RunError(f"node {reply.metadata.src_node_id} failed: {reply.error.reason}")
        out[int(reply.content["config"]["partition-id"])] = reply.metadata.src_node_id
    if len(out) < len(msgs):
        raise RunError(
            f"only {len(out)} of {len(msgs)} simulated clients answered within {timeout:g} s; "
            f"on a slow or busy machine set {CLIENT_START_TIMEOUT_ENV} to wait longer"
        )
    if sorted(out) != list(range(expected)):
        raise RunError(f"nodes reported partitions {sorted(out)}, expected 0..{expected - 1}")
    return out


def grid_transport(grid: Grid, node_of: dict[int, int]) -> Transport:
    """Send ``ClientTask`` messages over Flower and turn replies into ``Reply``s.

    A client that errors or never answers becomes a ``Reply`` with an error,
    which the world records as a rejected contribution.
    """
    client_of = {nid: c for c, nid in node_of.items()}

    def send(tasks: list[ClientTask], weights: Weights) -> list[Reply]:
        arrays = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()})
        msgs = [
            Message(
                RecordDict(
                    {"arrays": arrays, "config": ConfigRecord({"task": t.model_dump_json()})}
                ),
                dst_node_id=node_of[t.client_index],
                message_type=MessageType.TRAIN,
            )
            for t in tasks
        ]
        replies: list[Reply] = []
        seen: set[int] = set()
        for msg in grid.send_and_receive(msgs):
            client = client_of[msg.metadata.src_node_id]
            seen.add(client)
            if msg.has_error():
                replies.append(Reply(client, None, {}, error=f"client error: {msg.error.reason}"))
                continue
            content = msg.content
            metrics = {k: float(v) for k, v in content["metrics"].items()}  # type: ignore[arg-type]
            rec = content["arrays"]
            weights_out = {k: v.numpy() for k, v in rec.items()}  # type: ignore[union-attr]
            replies.append(Reply(client, weights_out, metrics))
        for t in tasks:
            if t.client_index not in seen:
                replies.append(Reply(t.client_index, None, {}, error="no reply"))
        return replies

    return send


def serve(
    grid: Grid,
    scenario: Scenario,
    out_dir: Path,
    on_round: Callable[[RoundRecord], None] | None = None,
    keyring: Keyring | None = None,
) -> WorldResult:
    """The body of the ServerApp: discover nodes, then run the world (signing its
    ledger with ``keyring``, default: the user's keyring)."""
    node_of = discover_nodes(grid, scenario.clients.count)
    transport = grid_transport(grid, node_of)
    world = World(scenario, out_dir, transport, on_round=on_round, keyring=keyring)
    return world.run()


def make_server_app(
    scenario: Scenario,
    out_dir: Path,
    sink: list[WorldResult],
    on_round: Callable[[RoundRecord], None] | None = None,
    keyring: Keyring | None = None,
) -> ServerApp:
    """A ServerApp bound to one scenario; the result is appended to ``sink``."""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        sink.append(serve(grid, scenario, out_dir, on_round, keyring))

    return server


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point for ``flwr run``: scenario and output directory from the run config."""
    from simulation.results.write import write_results

    scenario = load_scenario(str(context.run_config["scenario"]))
    out_dir = Path(str(context.run_config["out"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    keyring = Keyring.load_or_create()  # $FEDMARKET_KEYRING or the user's keyring
    result = serve(grid, scenario, out_dir, keyring=keyring)
    write_results(scenario, out_dir, result, wall_seconds=time.time() - started, keyring=keyring)
