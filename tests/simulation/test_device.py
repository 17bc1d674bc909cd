"""``training.device`` and ``resources.client_gpus``: never a silent fallback.

This machine has no GPU (torch is the CPU wheel), so ``auto`` must choose the CPU
and say why; CUDA's presence is simulated only to test the decision itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from simulation.config.schema import ResourcesConfig, Scenario, TrainingConfig
from simulation.engine import flower
from simulation.engine.runner import run_scenario
from simulation.errors import ScenarioError
from simulation.fl.device import resolve_device
from simulation.fl.training import ClientTask, DataSpec, run_client_task
from simulation.scenario.load import load_scenario, validate_data

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_chooses_cpu_here_and_says_why() -> None:
    assert not torch.cuda.is_available()
    choice = resolve_device(TrainingConfig(), ResourcesConfig())
    assert (choice.requested, choice.used) == ("auto", "cpu")
    assert choice.reason == f"auto: torch {torch.__version__} is a CPU-only build"
    assert resolve_device(TrainingConfig(device="cpu"), ResourcesConfig()).used == "cpu"


def test_cuda_without_cuda_is_a_scenario_error() -> None:
    with pytest.raises(ScenarioError) as exc:
        resolve_device(TrainingConfig(device="cuda"), ResourcesConfig(client_gpus=1.0))
    assert exc.value.problems[0].field == "training.device"
    with pytest.raises(ScenarioError) as exc:
        validate_data({"training": {"device": "cuda"}, "resources": {"client_gpus": 0.5}}, "s.yaml")
    assert [str(p) for p in exc.value.problems] == [
        f"s.yaml: training.device -> cuda requested, but torch {torch.__version__} is a "
        "CPU-only build"
    ]


def test_auto_uses_cuda_only_with_a_gpu_share(fake_cuda: None) -> None:
    none = resolve_device(TrainingConfig(), ResourcesConfig())
    assert none.used == "cpu" and "client_gpus is 0" in none.reason
    share = resolve_device(TrainingConfig(), ResourcesConfig(client_gpus=0.25))
    assert (share.used, share.name) == ("cuda", "Fake GPU")
    scenario = Scenario.model_validate({"resources": {"client_gpus": 0.25}})
    assert flower.gpu_resources(scenario) == (0.25, 2)  # Flower's share, Ray's GPUs


def test_no_gpus_requested_from_ray_on_cpu() -> None:
    scenario = Scenario.model_validate({"resources": {"client_gpus": 0.5}})
    assert flower.gpu_resources(scenario) == (0.0, 0)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"training": {"device": "cuda"}}, "training.device"),
        ({"training": {"device": "cpu"}, "resources": {"client_gpus": 1}}, "resources.client_gpus"),
        ({"resources": {"client_gpus": -1}}, "resources.client_gpus"),
    ],
)
def test_inconsistent_device_settings_are_rejected(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        validate_data(data, "s.yaml")
    assert [p.field for p in exc.value.problems] == [field]


def test_new_fields_at_their_defaults_leave_the_scenario_hash_alone() -> None:
    """Ledger geneses name scenarios by hash: a field added with a behaviour-preserving
    default must not rename earlier experiments; setting it must."""
    base = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    explicit = load_scenario(
        ROOT / "scenarios" / "quickstart.yaml",
        [
            "training.device=auto",
            "resources.client_gpus=0",
            "model.embedding_dim=8",
            "model.lstm_hidden=256",
            "model.lstm_layers=2",
        ],
    )
    assert explicit.sha256() == base.sha256()
    assert "device" in explicit.resolved()["training"]  # still in the manifest
    assert (
        load_scenario(ROOT / "scenarios" / "quickstart.yaml", ["training.device=cpu"]).sha256()
        != base.sha256()
    )


def test_a_task_for_cuda_fails_loudly_on_a_cpu_process() -> None:
    scenario = Scenario.model_validate({"clients": {"count": 2}})
    task = ClientTask(
        round=1,
        client_index=0,
        account="client-000",
        data=DataSpec.of(scenario),
        model=scenario.model,
        training=scenario.training,
        dp=None,
        seed=1,
        device="cuda",
    )
    with pytest.raises(RuntimeError, match="client-000: the task asks for cuda"):
        run_client_task(task, {})


def test_run_records_device_data_and_label_counts(tmp_path: Path) -> None:
    scenario = Scenario.model_validate(
        {
            "clients": {"count": 3},
            "rounds": 1,
            "partition": {"kind": "dirichlet", "alpha": 0.5},
            "market": {"initial_grant": 0, "stake": 0},
        }
    )
    run_scenario(scenario, tmp_path, engine="inprocess")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["device"]["used"] == "cpu" and manifest["device"]["requested"] == "auto"
    assert manifest["data"]["name"] == "digits" and manifest["data"]["source"] == "bundled"
    assert manifest["data"]["input_shape"] == [1, 8, 8] and manifest["data"]["num_classes"] == 10
    table = pd.read_parquet(tmp_path / "label_counts.parquet")
    assert list(table.columns) == ["client", "natural_id", "label", "label_name", "count"]
    data = DataSpec.of(scenario).build()
    for i, part in enumerate(data.partitions):
        mine = table[table["client"] == f"client-{i:03d}"].sort_values("label")
        assert mine["label"].tolist() == list(range(10))
        assert mine["count"].tolist() == np.bincount(data.y_train[part], minlength=10).tolist()
    assert table["count"].sum() == manifest["data"]["examples"]["train"]
