"""The in-process engine: every client task runs directly in this process, no Flower.

The baseline loop ``benchmarks/flower_overhead.py`` compares Flower against, and
what runs inside each worker of a study. Same tasks, same training code, same
replies as the Flower path.
"""

from __future__ import annotations

import logging

from simulation.fl.messages import ReplyMetrics
from simulation.fl.protocol import client_error
from simulation.fl.training import ClientTask, run_client_task
from simulation.world.records import Reply, Weights

__all__ = ["in_process_transport"]

log = logging.getLogger("fedmarket.engine")


def in_process_transport(tasks: list[ClientTask], weights: Weights) -> list[Reply]:
    """Run each task in turn; a client that raises becomes a ``Reply`` with the error."""
    out = []
    for task in tasks:
        try:
            res = run_client_task(task, weights)
        except Exception as exc:
            # The ledger gets the exception's class only (host-independent); the log the rest.
            log.info("client %d raised %s: %s", task.client_index, type(exc).__name__, exc)
            out.append(Reply(task.client_index, None, None, error=client_error(exc)))
            continue
        out.append(Reply(task.client_index, res.weights, ReplyMetrics.from_train_result(res)))
    return out
