"""The manifest's ``privacy`` block: what the run's DP guarantee covers, what it
does not, and the largest ε under both accountants (docs/privacy.md).

The ε are re-derived from the ledger's recorded mechanisms with dp-accounting
(the audit's code), so the manifest states what a verifier can re-check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marketplace import Market
from marketplace.privacy_audit import (
    PLD_DISCRETIZATION,
    RDP_ORDERS_NAME,
    identity_histories,
    pld_epsilon,
    rdp_epsilon,
)
from simulation.config.schema import DPSGDPrivacy, Scenario

__all__ = ["REPORT_PLD_DISCRETIZATION", "privacy_manifest"]

REPORT_PLD_DISCRETIZATION = 1e-3
"""PLD interval for the manifest's second opinion when the run accounts with RDP:
10x coarser than the runner's (an upper bound, ≤ ~1e-3 above the finer value),
so a report costs a fraction of a second."""

COUNTS = (
    "num_examples: each contribution's exact example count, treated as public "
    "metadata (FedAvg weights and data-size rewards use it); ε is for add/remove "
    "of one example and does not cover the count"
)
METRICS = (
    "train-loss and train-accuracy: unnoised metrics on the private batches "
    "(privacy.publish_train_metrics: true)"
)


def privacy_manifest(scenario: Scenario, run_dir: Path) -> dict[str, Any] | None:
    """``None`` without DP-SGD; else coverage and both accountants' largest ε."""
    dp = scenario.privacy
    if not isinstance(dp, DPSGDPrivacy):
        return None
    with Market.open(run_dir) as market:
        histories = identity_histories(market.entries())
    rdp = {a: rdp_epsilon(h, dp.delta) for a, h in histories.items()}
    block: dict[str, Any] = {
        # The ledger (and this block) is per identity; the budget and manifest
        # epsilon.per_owner compose every identity of a data owner.
        "level": "sample (DP-SGD, Poisson sampling); ledger per identity, budget per data owner",
        "accountant": dp.accountant,
        "delta": dp.delta,
        "rdp_orders": RDP_ORDERS_NAME,
        "covered": ["model updates (DP-SGD with Opacus)"],
        "outside_guarantee": [COUNTS, *([METRICS] if dp.publish_train_metrics else [])],
        "epsilon_max": None,
    }
    if rdp:
        worst = max(rdp, key=lambda a: (rdp[a], a))
        interval = PLD_DISCRETIZATION if dp.accountant == "pld" else REPORT_PLD_DISCRETIZATION
        block["epsilon_max"] = {
            "identity": worst,
            "rdp": rdp[worst],
            "pld": pld_epsilon(histories[worst], dp.delta, interval),
            "pld_discretization": interval,
        }
    return block
