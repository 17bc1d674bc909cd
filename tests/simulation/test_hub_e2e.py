"""A 3-round scenario on each Hub dataset's stand-in, end to end, offline.

The stand-ins sit in a private HF cache in the Hub repos' schemas; each run
goes validation → FederatedDataset → the standard model
→ ledger → result files → ``fedmarket plot`` and ``export-hf``. The data is
noise, so nothing here is about accuracy: only that the whole path works (DP-SGD on
MNIST here; on every standard model in ``test_standard_models``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from marketplace import audit_ledger
from simulation.cli.main import app
from simulation.config.catalog import facts
from simulation.engine.runner import run_scenario
from simulation.fl.models import build_model, parameter_count
from simulation.scenario.load import validate_data

pytestmark = pytest.mark.slow

DP = {"mode": "dp_sgd", "noise_multiplier": 1.0, "max_grad_norm": 1.0}
CASES: dict[str, dict[str, Any]] = {
    "mnist": {"model": {"name": "lenet5"}, "privacy": DP},
    "fashion_mnist": {
        "model": {"name": "fedavg_cnn"},
        "partition": {"kind": "shard", "shards_per_client": 2},
    },
    "cifar10": {
        "model": {"name": "resnet8"},
        "partition": {"kind": "dirichlet", "alpha": 0.5, "min_partition_size": 5},
    },
    "femnist": {
        "dataset": {"test_fraction": 0.1},
        "model": {"name": "lenet5"},
        "partition": {"kind": "natural"},
        "clients": {"count": 4},
    },
    "shakespeare": {
        "dataset": {"test_fraction": 0.1},
        # DP-SGD through DPLSTM is tested per model (test_standard_models); here it would
        # add ~30 s of per-sample LSTM gradients to the plumbing test.
        "model": {"name": "char_lstm", "lstm_hidden": 16},
        "partition": {"kind": "natural"},
    },
}


def scenario_data(name: str) -> dict[str, Any]:
    case = CASES[name]
    return {
        "name": f"hub-{name}",
        "seed": 3,
        "dataset": {"name": name, **case.get("dataset", {})},
        "model": case["model"],
        "partition": case.get("partition", {"kind": "iid"}),
        "clients": case.get("clients", {"count": 3}),
        "rounds": 3,
        "training": {"epochs": 1, "batch_size": 16, "lr": 0.05},
        "privacy": case.get("privacy", {"mode": "none"}),
    }


def check_run(name: str, out: Path, scenario: Any, tmp_path: Path) -> None:
    info = facts(name)
    manifest = json.loads((out / "manifest.json").read_text())
    assert audit_ledger(out).head_hash == manifest["ledger_head"]
    assert manifest["final"]["round"] == 3
    assert manifest["data"]["source"].startswith(f"hf-cache:{info.hub_id}@")
    assert manifest["device"]["used"] == "cpu"
    labels = pd.read_parquet(out / "label_counts.parquet")
    assert len(labels) == scenario.clients.count * info.num_classes
    assert labels["count"].sum() == manifest["data"]["examples"]["train"]
    res = CliRunner().invoke(app, ["plot", str(out), "--format", "png"])
    assert res.exit_code == 0, res.output
    assert (out / "plots" / "label_distribution.png").stat().st_size > 0
    res = CliRunner().invoke(app, ["export-hf", str(out), "--out", str(tmp_path / "hf")])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["input_shape"] == list(info.input_shape or ())
    assert config["num_classes"] == info.num_classes
    model = build_model(
        scenario.model, info.input_shape, info.num_classes, torch.Generator().manual_seed(0)
    )
    assert config["num_parameters"] == parameter_count(model)


@pytest.mark.parametrize("name", list(CASES))
def test_three_rounds_on_each_hub_dataset(hf_env: Path, tmp_path: Path, name: str) -> None:
    scenario = validate_data(scenario_data(name), f"{name}.yaml")
    out = tmp_path / "run"
    outcome = run_scenario(scenario, out, engine="inprocess")
    assert len(outcome.result.rounds) == 4  # round 0 is the initial model
    if scenario.privacy.mode == "dp_sgd":
        assert outcome.manifest["final"]["epsilon_max"] > 0
    check_run(name, out, scenario, tmp_path)


def test_femnist_through_the_flower_engine(hf_env: Path, tmp_path: Path) -> None:
    """Ray's client processes find the stand-ins through the inherited HF environment and
    train the same partitions as the in-process loop."""
    scenario = validate_data(scenario_data("femnist"), "femnist.yaml")
    flower = run_scenario(scenario, tmp_path / "flower", engine="flower")
    inproc = run_scenario(scenario, tmp_path / "inprocess", engine="inprocess")
    assert flower.result.head_hash == inproc.result.head_hash
    check_run("femnist", tmp_path / "flower", scenario, tmp_path)
