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
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from simulation.config.schema import Scenario
from simulation.engine.channel import RunChannel
from simulation.engine.replies import StopCheck, judge_round, never, wait_for_replies
from simulation.errors import RunError, RunInterrupted
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


def discover_nodes(
    grid: Grid,
    expected: int,
    timeout: float | None = None,
    should_stop: StopCheck = never,
) -> dict[int, int]:
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
        if should_stop():
            raise RunInterrupted("stop requested")
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
    remaining = max(deadline - time.monotonic(), 1.0)
    got = wait_for_replies(grid, msgs, timeout=remaining, should_stop=should_stop)
    out: dict[int, int] = {}
    for replies in got.replies.values():
        reply = replies[0]
        if reply.has_error():
            raise RunError(f"node {reply.metadata.src_node_id} failed: {reply.error.reason}")
        partition = reply.content["config"]["partition-id"]
        out[int(partition)] = reply.metadata.src_node_id  # type: ignore[arg-type]
    if len(out) < len(msgs):
        raise RunError(
            f"only {len(out)} of {len(msgs)} simulated clients answered within {timeout:g} s; "
            f"on a slow or busy machine set {CLIENT_START_TIMEOUT_ENV} to wait longer"
        )
    if sorted(out) != list(range(expected)):
        raise RunError(f"nodes reported partitions {sorted(out)}, expected 0..{expected - 1}")
    return out


def grid_transport(
    grid: Grid,
    node_of: dict[int, int],
    *,
    timeout: float,
    should_stop: StopCheck = never,
) -> Transport:
    """Send ``ClientTask`` messages over Flower and judge what comes back.

    Every task gets a ``Reply``: the update, or a rejection (the client
    errored, hung past ``timeout`` seconds, or broke the protocol; see
    ``simulation.engine.replies``), which the world records on the ledger.
    """
    client_of_node = {nid: c for c, nid in node_of.items()}

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
        got = wait_for_replies(grid, msgs, timeout=timeout, should_stop=should_stop)
        return judge_round(
            got,
            lambda m: client_of_node[m.metadata.dst_node_id],
            client_of_node,
            timeout,
        )

    return send


def serve(
    grid: Grid,
    scenario: Scenario,
    out_dir: Path,
    on_round: Callable[[RoundRecord], None] | None = None,
    should_stop: StopCheck = never,
) -> WorldResult:
    """The body of the ServerApp: discover nodes, then run the world."""
    node_of = discover_nodes(grid, scenario.clients.count, should_stop=should_stop)
    transport = grid_transport(
        grid, node_of, timeout=scenario.resources.round_timeout_s, should_stop=should_stop
    )
    return World(scenario, out_dir, transport, on_round=on_round).run()


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point on a SuperLink: ``fedmarket run`` (run config ``channel``) or ``flwr run``."""
    out_dir = Path(str(context.run_config["out"])).expanduser()
    channel = str(context.run_config.get("channel", ""))
    if channel:
        _serve_channel(grid, RunChannel(Path(channel)), out_dir)
        return
    from simulation.results.write import write_results

    scenario = load_scenario(Path(str(context.run_config["scenario"])).expanduser())
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result = serve(grid, scenario, out_dir)
    write_results(scenario, out_dir, result, wall_seconds=time.time() - started)
    log.info("results written to %s", out_dir.resolve())


def _serve_channel(grid: Grid, channel: RunChannel, out_dir: Path) -> None:
    """Run for ``fedmarket run``: scenario in, rounds, logs and the result out, as files."""
    logger = logging.getLogger("fedmarket")
    handler = channel.log_handler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        scenario = load_scenario(channel.scenario)
        result = serve(grid, scenario, out_dir, channel.write_round, channel.stop_requested)
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
