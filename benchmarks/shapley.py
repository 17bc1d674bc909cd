"""Exact vs TMC vs GTG-Shapley on the saturating-accuracy game, side by side.

Run from the repository root::

    .venv/bin/python benchmarks/shapley.py            # N = 6, 8, 10, 5 seeds

For each N it prints distinct utility calls (the cost that dominates in FL:
each call aggregates a coalition model and validates it), the exact/GTG call
ratio, error against exact Shapley (relative L1 ‖φ̂-φ‖₁/‖φ‖₁, Spearman ρ) and
wall time, each averaged over seeds, all measured in one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from marketplace.contribution import exact_shapley, gtg_shapley, tmc_shapley
from tests.incentives.games import saturating_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[6, 8, 10])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    header = (
        f"{'N':>3} {'method':<14} {'calls':>7} {'exact/calls':>11} "
        f"{'relL1':>7} {'spearman':>8} {'ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        utility = saturating_accuracy(n)
        started = time.perf_counter()
        exact = exact_shapley(utility, n)
        exact_ms = 1000 * (time.perf_counter() - started)
        reference = np.array(exact.scores)
        print(
            f"{n:>3} {'exact_shapley':<14} {exact.utility_calls:>7} {1.0:>11.1f} "
            f"{0.0:>7.3f} {1.0:>8.3f} {exact_ms:>8.1f}"
        )
        for name, method in (("tmc_shapley", tmc_shapley), ("gtg_shapley", gtg_shapley)):
            calls, errors, rhos, millis = [], [], [], []
            for seed in range(args.seeds):
                started = time.perf_counter()
                result = method(utility, n, rng=np.random.default_rng(seed))
                millis.append(1000 * (time.perf_counter() - started))
                estimate = np.array(result.scores)
                calls.append(result.utility_calls)
                errors.append(np.abs(estimate - reference).sum() / np.abs(reference).sum())
                rhos.append(spearmanr(estimate, reference).statistic)
            mean_calls = float(np.mean(calls))
            print(
                f"{n:>3} {name:<14} {mean_calls:>7.1f} {exact.utility_calls / mean_calls:>11.1f} "
                f"{np.mean(errors):>7.3f} {np.mean(rhos):>8.3f} {np.mean(millis):>8.1f}"
                f"   (calls {min(calls)}-{max(calls)}, rho min {min(rhos):.3f})"
            )


if __name__ == "__main__":
    main()
