"""The Flower ClientApp: stateless apart from Flower's ``Context``.

Every train message carries a ``ClientTask`` (JSON in the ConfigRecord
``config["task"]``) and the global model (ArrayRecord ``arrays``); the reply
carries the new weights and a MetricRecord with ``num-examples`` (FedAvg's
weight), the DP step count and sample rate (the server's accountant composes
them), and local metrics. A query message answers with the node's partition id
so the server can map Flower node ids to market accounts.

A task that raises is answered with a Flower ``Error`` whose reason is the
ledger's ``client_error`` text (the exception's class, see
``simulation.fl.protocol``); the traceback goes to this node's log. Left to
Flower, the reason would be Ray's traceback, which differs between hosts and
runs.
"""

from __future__ import annotations

import logging

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

from simulation.fl.messages import ReplyMetrics
from simulation.fl.protocol import client_error
from simulation.fl.training import ClientTask, run_client_task

log = logging.getLogger("fedmarket.client")

app = ClientApp()


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Report which data partition this node holds."""
    partition = int(context.node_config.get("partition-id", -1))
    content = RecordDict({"config": ConfigRecord({"partition-id": partition})})
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Run one round of local training as described by the message's ``ClientTask``."""
    try:
        return _train(msg)
    except Exception as exc:
        log.warning("train task failed on node %s", context.node_id, exc_info=True)
        error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=client_error(exc))
        return Message(error, reply_to=msg)


def _train(msg: Message) -> Message:
    task = ClientTask.model_validate_json(str(msg.content["config"]["task"]))
    arrays = msg.content["arrays"]
    if not isinstance(arrays, ArrayRecord):
        raise TypeError("the train message carries no ArrayRecord 'arrays'")
    global_weights = {k: v.numpy() for k, v in arrays.items()}
    result = run_client_task(task, global_weights)

    metrics = MetricRecord(
        {**ReplyMetrics.from_train_result(result).to_record(), "client-index": task.client_index}
    )
    reply_arrays = ArrayRecord(
        {k: Array(np.ascontiguousarray(v)) for k, v in result.weights.items()}
    )
    content = RecordDict({"arrays": reply_arrays, "metrics": metrics})
    return Message(content=content, reply_to=msg)
