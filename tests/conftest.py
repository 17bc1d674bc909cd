"""Suite-wide settings: no telemetry, quiet Ray, sockets blocked except loopback,
Hypothesis without timing-dependent failures."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from tests.keyring import KEYRING_FILE

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Every run, CLI call and subprocess signs with the fixed, public test keyring,
# never one in the user's configuration directory.
os.environ["FEDMARKET_KEYRING"] = str(KEYRING_FILE)


# Property tests run on shared 2-core CI machines: a scheduler pause inside one
# example must not fail the suite (no per-example deadline, no too-slow health
# check), and a failure must replay the same way on every run (derandomize).
settings.register_profile(
    "fedmarket",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fedmarket"))
