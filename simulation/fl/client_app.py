"""The Flower ClientApp: stateless apart from Flower's ``Context``.

Every train message carries a ``ClientTask`` (JSON in the ConfigRecord
``config["task"]``) and the global model (ArrayRecord ``arrays``); the reply
carries the new weights and a MetricRecord with ``num-examples`` (FedAvg's
weight), the DP step count and sample rate (the server's accountant composes
them), and local metrics. A query message answers with the node's partition id
so the server can map Flower node ids to market accounts.

On a deployed SuperNode (``--engine deployment``, ``fedmarket deploy supernode``)
the node config names ``data-path``, the participant's own partition file
(``simulation.fl.own_data``): the ClientApp trains on it alone, and keeps the
last round it trained in ``Context.state`` (a SuperNode may start a new ClientApp
process per message), refusing a replayed or older task.

A task that raises is answered with a Flower ``Error`` whose reason is the
ledger's ``client_error`` text (the exception's class, see
``simulation.fl.protocol``); the traceback goes to this node's log. Left to
Flower, the reason would be Ray's traceback, which differs between hosts and
runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from simulation.fl.data_file import RUN_CONFIG_KEY
from simulation.fl.messages import QUERY_DP_SGD, ReplyMetrics
from simulation.fl.own_data import OwnPartition
from simulation.fl.protocol import client_error

if TYPE_CHECKING:
    from marketplace.keyring import Keyring

# Training (torch) and node signing (the ledger) are imported where they are used:
# ``flwr-simulation`` imports this module to check that the ClientApp loads before
# it connects to Ray and starts the actors, and on that path torch cost ~3 CPU-s
# (the ServerApp thread imports it meanwhile anyway). An actor imports them while
# it answers its node query, as before, before its first task.

log = logging.getLogger("fedmarket.client")

DATA_PATH = "data-path"
"""Node config key: the participant's own partition file (Deployment Engine only)."""

KEYRING_PATH = "keyring-path"
"""Node config key: the participant's keyring file, to sign its contributions with."""

NODE_STATE = "fedmarket-node"
"""``Context.state`` record of a deployed node: the last round it trained."""

app = ClientApp()


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Report which data partition this node holds."""
    # What the first task needs is imported now, while the server builds its world.
    import simulation.fl.training  # torch

    if not context.node_config.get(DATA_PATH) and not context.run_config.get(RUN_CONFIG_KEY):
        # A simulated client under `flwr run` rebuilds the federated data.
        import simulation.fl.data  # noqa: F401
    config = msg.content.get("config")
    if isinstance(config, ConfigRecord) and config.get(QUERY_DP_SGD):
        import opacus  # noqa: F401  (seconds: it imports torch.distributed and scipy)
    partition = int(context.node_config.get("partition-id", -1))
    content = RecordDict({"config": ConfigRecord({"partition-id": partition})})
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Run one round of local training as described by the message's ``ClientTask``."""
    try:
        return _train(msg, context)
    except Exception as exc:
        log.warning("train task failed on node %s", context.node_id, exc_info=True)
        error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=client_error(exc))
        return Message(error, reply_to=msg)


def _train(msg: Message, context: Context) -> Message:
    from simulation.fl.training import ClientTask, run_client_task

    task = ClientTask.model_validate_json(str(msg.content["config"]["task"]))
    arrays = msg.content["arrays"]
    if not isinstance(arrays, ArrayRecord):
        raise TypeError("the train message carries no ArrayRecord 'arrays'")
    global_weights = {k: v.numpy() for k, v in arrays.items()}
    own = _own_partition(context)
    if own is not None:
        _check_fresh_round(context, task.round)
    elif data_file := str(context.run_config.get(RUN_CONFIG_KEY, "")):
        task.data.preload(Path(data_file))  # the driver built it: not built again here
    result = run_client_task(task, global_weights, own)
    if own is not None:
        context.state[NODE_STATE] = ConfigRecord({"last-round": task.round})

    reply_metrics = ReplyMetrics.from_train_result(result)
    metrics = MetricRecord({**reply_metrics.to_record(), "client-index": task.client_index})
    reply_arrays = ArrayRecord(
        {k: Array(np.ascontiguousarray(v)) for k, v in result.weights.items()}
    )
    content = RecordDict({"arrays": reply_arrays, "metrics": metrics})
    if task.sign is not None:
        from simulation.fl.node_signing import SIGNATURE, sign_contribution

        signature = sign_contribution(
            task.sign,
            keyring=_node_keyring(context),
            account=task.account,
            round_=task.round,
            weights=result.weights,
            metrics=reply_metrics,
        )
        content[SIGNATURE] = ConfigRecord({SIGNATURE: signature})
    return Message(content=content, reply_to=msg)


def _node_keyring(context: Context) -> Keyring:
    """This participant's keyring (node config ``keyring-path``): it signs with its own
    account key, derived from the file on its own host."""
    from marketplace.keyring import Keyring

    path = str(context.node_config.get(KEYRING_PATH, ""))
    if not path:
        raise ValueError(f"the task asks for a signature but the node config has no {KEYRING_PATH}")
    return Keyring.load(Path(path))


def _own_partition(context: Context) -> OwnPartition | None:
    """The partition file named by the node config (a deployed SuperNode), else ``None``
    (the Simulation Engine: every client rebuilds the federated data from the task)."""
    path = str(context.node_config.get(DATA_PATH, ""))
    if not path:
        return None
    own = OwnPartition.load(Path(path))
    if own.partition_id != int(context.node_config.get("partition-id", -1)):
        raise ValueError(f"{path} holds partition {own.partition_id}, not this node's")
    return own


def _check_fresh_round(context: Context, round_: int) -> None:
    """A deployed node trains once per round: a replayed or older task is refused.

    Kept in ``Context.state`` because the SuperNode may start a new ClientApp
    process for every message; the context is what persists between them."""
    record = context.state.get(NODE_STATE)
    if isinstance(record, ConfigRecord):
        last = int(record.get("last-round", 0))  # type: ignore[arg-type]
        if round_ <= last:
            raise ValueError(f"task for round {round_} after round {last} was trained")
