"""Per-run outcome metrics, computed from a run directory's files only.

One definition shared by ``fedmarket run`` (the manifest's ``attack`` block),
``fedmarket compare`` (the study table) and the plots, so every number a run
or a study reports means the same thing everywhere.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulation import names
from simulation.results.groups import RunFiles, sum_by_owner

__all__ = ["METRICS", "METRIC_RANGES", "gini", "metric_range", "run_metrics"]

#: The per-run metrics of the study table, in column order (see ``docs/compare.md``).
METRICS = (
    "test_accuracy",
    "test_loss",
    "epsilon_max",
    "attacker_token_share",
    "honest_profit",
    "reward_gini",
    "reward_spearman",
    "detection_precision",
    "detection_recall",
    "attacker_contribution_share",
    "accuracy_drop",
    "backdoor_success",
    "attacker_fraction",
    "attack_success",
    "fraud_tokens",
    "rating_shift",
    "wall_seconds",
)

NAN = float("nan")
_INF = float("inf")

#: Each metric's natural range, to which a study's intervals are clipped (a metric
#: not listed is unbounded). ``attacker_contribution_share`` is left unbounded: a
#: signed share of the reference contribution can leave [0, 1].
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "test_accuracy": (0.0, 1.0),
    "test_loss": (0.0, _INF),
    "epsilon_max": (0.0, _INF),
    "attacker_token_share": (0.0, 1.0),
    "reward_gini": (0.0, 1.0),
    "reward_spearman": (-1.0, 1.0),
    "detection_precision": (0.0, 1.0),
    "detection_recall": (0.0, 1.0),
    "accuracy_drop": (-1.0, 1.0),
    "backdoor_success": (0.0, 1.0),
    "attacker_fraction": (0.0, 1.0),
    "attack_success": (-1.0, 1.0),
    "fraud_tokens": (0.0, _INF),
    "rating_shift": (-5.0, 5.0),
    "wall_seconds": (0.0, _INF),
}


def metric_range(metric: str) -> tuple[float, float]:
    """The natural ``(low, high)`` of ``metric``; unbounded when not in :data:`METRIC_RANGES`."""
    return METRIC_RANGES.get(metric, (-_INF, _INF))


# ----------------------------------------------------------------------- metrics


def gini(values: Sequence[float]) -> float:
    """Gini coefficient ``sum_ij |x_i - x_j| / (2 n^2 mean)``; 0 when all are zero.

    0 is perfect equality, (n-1)/n one account holding everything. Defined
    for non-negative amounts such as tokens earned.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0 or not np.any(x):
        return 0.0
    # sum_ij |x_i - x_j| = 2 sum_k (2k - n - 1) x_(k) over the sorted values (k = 1..n):
    # O(n log n) time and O(n) memory (the pairwise matrix is 80 GB at 100,000 accounts).
    n = x.size
    ranks = 2.0 * np.arange(1, n + 1) - n - 1
    diffs = 2.0 * float(np.dot(ranks, np.sort(x)))
    return float(diffs / (2.0 * n**2 * x.mean()))


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) < 2 or np.ptp(np.asarray(a, float)) == 0 or np.ptp(np.asarray(b, float)) == 0:
        return NAN
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(a, b).statistic
    return float(rho)


def _attack_success(manifest: Mapping[str, Any], final: Mapping[str, Any]) -> float:
    """A backdoor's success rate when the run has one, else the accuracy drop."""
    backdoor = final.get("backdoor_success")
    if isinstance(backdoor, int | float) and backdoor == backdoor:
        return float(backdoor)
    base, acc = manifest.get("baseline_accuracy"), final.get("test_accuracy")
    if isinstance(base, int | float) and isinstance(acc, int | float):
        return float(base) - float(acc)
    return NAN


def run_metrics(run_dir: Path | str | RunFiles) -> dict[str, float]:
    """The study-table metrics of one finished run, from its files only.

    * ``test_accuracy``, ``test_loss``, ``epsilon_max``, ``wall_seconds``:
      ``manifest.json`` (its ``final`` block).
    * accounts are data owners: every identity's rows count for its owner
      (``ground_truth.json`` ``owners``; a whitewasher's fresh names and a Sybil
      group's identities are one owner), so every count, share and Gini is over
      owners. Tokens per owner: the sum over rounds of ``metrics.parquet`` rows
      with ``metric == "reward_tokens"`` or ``"royalty_tokens"`` (license
      revenue); owners are those rows' clients' plus every identity's in
      ``ground_truth.json`` ``behaviours`` (zero tokens).
    * attackers are the attacking owners, one definition for every column here and
      the group columns' ``total:attackers`` (:meth:`Truth.attacker_owners`): owners
      of ``ground_truth["attackers"]`` and of every identity whose role is not
      ``honest``, so market attackers (a colluding cabal alone) count.
    * ``attacker_token_share``: the attacking owners' tokens / all tokens (NaN when
      no tokens were paid).
    * ``honest_profit``: mean over non-attacker accounts of tokens earned
      minus the sum of their ``metric == "cost"`` rows, when such rows exist.
    * ``reward_gini``: :func:`gini` of every data owner's tokens (rewards and royalties).
    * ``reward_spearman``: Spearman's rho between tokens and the sum of
      ``metric == "true_contribution"`` rows per account (NaN without such
      rows or when either side is constant).
    * ``attacker_contribution_share``: the attackers' signed share of the
      reference contribution: their summed ``true_contribution`` over everyone's
      (negative when they harmed the model; NaN when the total is not
      positive), to set against their token share.
    * ``accuracy_drop``: the no-attack baseline's final accuracy (same seed,
      ``output.baseline``) minus this run's; ``backdoor_success``,
      ``fraud_tokens`` and ``rating_shift`` from the manifest.
    * ``attacker_fraction``: attackers / accounts; ``attack_success``: the
      backdoor success rate when there is a backdoor, else ``accuracy_drop``
      (what the study heatmap plots against the attacker fraction).
    * ``detection_precision`` / ``recall``: an account is flagged when any of
      its ``metric == "flagged"`` rows is >= 0.5; measured against the
      ground-truth attackers. NaN when the run has no ``flagged`` rows, when
      nothing was flagged (precision) or when there are no attackers (recall).
    """
    files = RunFiles.read(run_dir)
    manifest, metrics, raw, truth = files.manifest, files.metrics, files.ground_truth, files.truth
    final = manifest.get("final", {})
    attackers = truth.attacker_owners()  # the group columns' ``total:attackers`` too

    tokens = sum_by_owner(metrics, names.REWARD_TOKENS, truth).add(
        sum_by_owner(metrics, names.ROYALTY_TOKENS, truth), fill_value=0.0
    )
    known = {truth.owner(str(a)) for a in raw.get("behaviours", {})}
    accounts = sorted(set(tokens.index) | known | attackers)
    tokens = tokens.reindex(accounts, fill_value=0.0)
    total = float(tokens.sum())
    share = float(tokens[tokens.index.isin(attackers)].sum()) / total if total > 0 else NAN

    honest = [a for a in accounts if a not in attackers]
    costs = sum_by_owner(metrics, names.COST, truth).reindex(accounts, fill_value=0.0)
    profit = float((tokens[honest] - costs[honest]).mean()) if honest else NAN

    contribution = sum_by_owner(metrics, names.TRUE_CONTRIBUTION, truth)
    if contribution.empty:
        rho = contribution_share = NAN
    else:
        common = [a for a in accounts if a in contribution.index]
        rho = _spearman(tokens[common].tolist(), contribution[common].tolist())
        total_contribution = float(contribution.sum())
        contribution_share = (
            float(contribution[contribution.index.isin(attackers)].sum()) / total_contribution
            if total_contribution > 0
            else NAN
        )

    flags = metrics[(metrics["metric"] == names.FLAGGED) & (metrics["client"] != names.GLOBAL)]
    if flags.empty:
        precision = recall = NAN
    else:
        flagged = {truth.owner(str(a)) for a in flags.loc[flags["value"] >= 0.5, "client"]}
        hits = len(flagged & attackers)
        precision = hits / len(flagged) if flagged else NAN
        recall = hits / len(attackers) if attackers else NAN

    def num(value: Any) -> float:
        return float(value) if isinstance(value, int | float) else NAN

    return {
        "test_accuracy": num(final.get("test_accuracy")),
        "test_loss": num(final.get("test_loss")),
        "epsilon_max": num(final.get("epsilon_max")),
        "attacker_token_share": share,
        "honest_profit": profit,
        "reward_gini": gini(tokens.tolist()),
        "reward_spearman": rho,
        "detection_precision": float(precision),
        "detection_recall": float(recall),
        "attacker_contribution_share": contribution_share,
        "accuracy_drop": (
            num(manifest.get("baseline_accuracy")) - num(final.get("test_accuracy"))
            if manifest.get("baseline_accuracy") is not None
            else NAN
        ),
        "backdoor_success": num(final.get("backdoor_success")),
        "attacker_fraction": len(attackers) / len(accounts) if accounts else NAN,
        "attack_success": _attack_success(manifest, final),
        "fraud_tokens": num((manifest.get("market") or {}).get("fraud_tokens")),
        "rating_shift": num((manifest.get("market") or {}).get("rating_shift_mean")),
        "wall_seconds": num(manifest.get("wall_seconds")),
    }
