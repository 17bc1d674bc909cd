"""How often a selecting aggregator (Krum, Multi-Krum) kept an attacker's update.

Baruch et al. 2019 ("A Little Is Enough") defeat Krum by making it *select* the
colluders' crafted update. The world records, per round, each client whose update
the rule kept (``aggregation_selected`` in ``metrics.parquet``) and ground truth
names the attackers (``ground_truth.json``), so the share of rounds in which a kept
update was an attacker's is derived here from a finished run's files.

``python -m simulation.study.selection STUDY_DIR`` prints one line per run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from simulation import names
from simulation.study.per_run import with_run_column

__all__ = ["attacker_selected_share", "study_selection"]


def attacker_selected_share(run_dir: Path | str) -> float:
    """Share of the rounds with a recorded selection in which an attacker's update was
    kept (under Multi-Krum: at least one of the kept updates); NaN when the run's rule
    records no selection."""
    p = Path(run_dir)
    attackers = set(json.loads((p / "ground_truth.json").read_text())["attackers"])
    metrics = pd.read_parquet(p / "metrics.parquet", columns=["round", "client", "metric"])
    kept = metrics[metrics["metric"] == names.AGGREGATION_SELECTED]
    if kept.empty:
        return float("nan")
    return float(kept["client"].isin(attackers).groupby(kept["round"]).any().mean())


def study_selection(study_dir: Path | str) -> pd.DataFrame:
    """``study.parquet``'s rows with an ``attacker_selected`` column (failed runs: NaN)."""
    return with_run_column(study_dir, "attacker_selected", attacker_selected_share)


def main(argv: list[str]) -> int:
    """Print ``run_id  attacker_selected  test_accuracy  accuracy_drop`` per run."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m simulation.study.selection STUDY_DIR\n")
        return 2
    table = study_selection(argv[0])
    cols = [c for c in ("test_accuracy", "accuracy_drop") if c in table]
    sys.stdout.write(table[["run_id", "attacker_selected", *cols]].to_string(index=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
