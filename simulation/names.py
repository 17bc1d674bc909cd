"""Names of the long-form metrics (``metrics.parquet``'s ``metric`` column).

A metric written by the world and read by the study table, the plots and the
report is named here once, so a rename cannot leave a reader behind.
"""

from __future__ import annotations

from typing import Final

GLOBAL: Final = "global"
"""The ``client`` of per-round global metrics."""

# Per client and round.
EPSILON: Final = "epsilon"
COST: Final = "cost"
REJECTED: Final = "rejected"
NUM_EXAMPLES: Final = "num_examples"
TRAIN_LOSS: Final = "train_loss"
TRAIN_ACCURACY: Final = "train_accuracy"
CONTRIBUTION_SCORE: Final = "contribution_score"
TRUE_CONTRIBUTION: Final = "true_contribution"
TRUE_CONTRIBUTION_SE: Final = "true_contribution_se"
AGGREGATION_WEIGHT: Final = "aggregation_weight"
FLAGGED: Final = "flagged"
AGGREGATION_SELECTED: Final = "aggregation_selected"
"""1.0 for each client whose update a selecting rule (Krum, Multi-Krum) kept that round."""
REWARD_TOKENS: Final = "reward_tokens"
SLASHED_TOKENS: Final = "slashed_tokens"
ROYALTY_TOKENS: Final = "royalty_tokens"

# Global, per round.
CONTRIBUTION_UTILITY_CALLS: Final = "contribution_utility_calls"
ATTACKER_TOKEN_SHARE: Final = "attacker_token_share"
HONEST_PROFIT: Final = "honest_profit"
BASELINE_ACCURACY: Final = "baseline_accuracy"
ACCURACY_DROP: Final = "accuracy_drop"

# Columns of ``rounds.parquet`` (fields of ``simulation.world.records.RoundRecord``).
CLIENT_EPSILON: Final = "client_epsilon"
"""Client-level DP (``aggregation.client_dp``): cumulative ε over the rounds released."""
CLIENT_EPSILON_ROUND: Final = "client_epsilon_round"
"""Client-level DP: the ε of this round's release alone."""
REFERENCE_SE_RATIO: Final = "reference_se_ratio"
"""Monte Carlo reference rounds: the largest standard error over its target (> 1: missed)."""

TOKEN_METRICS: Final = (REWARD_TOKENS, ROYALTY_TOKENS)
"""Metrics whose values are tokens an account earned."""
