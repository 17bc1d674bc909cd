"""The attack rate of a targeted label flip, from a finished run's files.

Fung et al. 2020 (FoolsGold) measure a targeted label-flipping attack (e.g. MNIST
1 → 7) by its *attack rate*: the share of test examples of a source class that the
final global model assigns to that class's target. The run files hold everything
needed to recompute it — the resolved ``scenario.yaml`` (the flip's ``mapping``,
the data spec) and the final ``model.safetensors`` — so it is derived here after
the fact, like every other study metric (:func:`simulation.results.run_metrics`),
and not logged by the world.

``python -m simulation.study.attack_rate STUDY_DIR`` prints one line per run.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from simulation.config.schema import Scenario
from simulation.errors import Problem, ScenarioError
from simulation.fl.models import build_model, load_numpy
from simulation.fl.training import DataSpec, predict
from simulation.rng import SeedTree
from simulation.scenario.load import load_scenario
from simulation.study.per_run import with_run_column

__all__ = ["flip_mapping", "run_attack_rate", "study_attack_rates"]


def flip_mapping(scenario: Scenario) -> dict[int, int]:
    """The source → target map of the scenario's ``label_flip`` groups.

    Raises:
        ScenarioError: when no ``label_flip`` group sets ``params.mapping`` (an
            untargeted flip has no attack rate) or two groups disagree on a source.
    """
    out: dict[int, int] = {}
    for i, group in enumerate(scenario.population):
        mapping = group.params.get("mapping") if group.behaviour == "label_flip" else None
        for src, dst in (mapping or {}).items():
            if out.setdefault(int(src), int(dst)) != int(dst):
                where = f"population[{i}].params.mapping"
                reason = f"two label_flip groups map label {src} differently"
                raise ScenarioError([Problem("scenario", where, reason)])
    if not out:
        reason = "no label_flip group sets a mapping (an untargeted flip has no attack rate)"
        raise ScenarioError([Problem("scenario", "population", reason)])
    return out


def attack_rate(pred: np.ndarray, y: np.ndarray, mapping: Mapping[int, int]) -> float:
    """Share of the samples of a source class predicted as that class's target."""
    source = np.isin(y, list(mapping))
    if not source.any():
        return float("nan")
    target = np.array([mapping[int(label)] for label in y[source]])
    return float((pred[source] == target).mean())


def run_attack_rate(run_dir: Path | str) -> float:
    """The attack rate of the final model of one run, on the run's test split."""
    from safetensors.numpy import load_file

    p = Path(run_dir)
    scenario = load_scenario(p / "scenario.yaml")
    mapping = flip_mapping(scenario)
    data = DataSpec.of(scenario).build()
    gen = SeedTree(scenario.seed).torch("attack-rate")
    model = build_model(scenario.model, data.input_shape, data.num_classes, gen)
    load_numpy(model, load_file(str(p / "model.safetensors")))
    pred = predict(model, data.x_test, data.input_shape).argmax(axis=1)
    return attack_rate(pred, data.y_test, mapping)


def study_attack_rates(study_dir: Path | str) -> pd.DataFrame:
    """``study.parquet``'s rows with an ``attack_rate`` column added (runs that failed: NaN)."""
    return with_run_column(study_dir, "attack_rate", run_attack_rate)


def main(argv: list[str]) -> int:
    """Print ``run_id  attack_rate`` per run and the mean per design."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m simulation.study.attack_rate STUDY_DIR\n")
        return 2
    table = study_attack_rates(argv[0])
    sys.stdout.write(table[["run_id", "attack_rate"]].to_string(index=False) + "\n")
    sys.stdout.write(table.groupby("design")["attack_rate"].agg(["mean", "min", "max"]).to_string())
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
