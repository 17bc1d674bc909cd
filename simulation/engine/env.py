"""The process environment Flower and Ray need, set before either is imported.

Kept free of heavy imports: the CLI calls it first thing, before it knows
whether the command will train anything.
"""

from __future__ import annotations

import os

__all__ = ["quiet_environment"]


def quiet_environment() -> None:
    """Environment for Flower and Ray: no telemetry, no usage stats, one thread per actor."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    # Ray renices its workers to 15. Here the workers are the clients doing the
    # training, so any other load on the machine (a second run, a busy CI host)
    # would starve them: beside two CPU-bound processes, no client of a 4-client
    # run had answered after 120 s; at niceness 0 the whole run took 44 s.
    os.environ.setdefault("RAY_worker_niceness", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Ray workers inherit the driver's environment (Flower owns ``runtime_env``).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # No PYTHONWARNINGS here: a blanket ignore would hide what Opacus and torch warn
    # about in the clients; the warnings that are understood are filtered one by one
    # where they arise (simulation/fl/training.py, simulation/fl/privacy.py).
