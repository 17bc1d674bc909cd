"""FedProx (Li et al. 2020): the proximal term μ/2‖w − wᵗ‖² in local training, with and
without DP-SGD, on the paper's Synthetic(1, 1) task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from simulation.config.schema import (
    DatasetConfig,
    ModelConfig,
    NaturalPartition,
    SyntheticConfig,
    TrainingConfig,
)
from simulation.engine.runner import run_scenario
from simulation.fl.aggregation import proximal_mu
from simulation.fl.models import build_model, state_to_numpy
from simulation.fl.training import ClientTask, DataSpec, DPSpec, run_client_task
from simulation.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = DataSpec(
    dataset=DatasetConfig(
        name="synthetic", synthetic=SyntheticConfig(alpha=1.0, beta=1.0, samples_per_client=60)
    ),
    partition=NaturalPartition(),
    num_clients=4,
    seed=3,
)
LOGREG = ModelConfig(name="logreg")
DP = DPSpec(noise_multiplier=0.3, max_grad_norm=1.0, grad_sample_mode="hooks")


def _global() -> dict[str, np.ndarray]:
    data = SYNTHETIC.build()
    model = build_model(
        LOGREG, data.input_shape, data.num_classes, torch.Generator().manual_seed(0)
    )
    return state_to_numpy(model)


def _train(client: int, mu: float, dp: DPSpec | None) -> dict[str, np.ndarray]:
    task = ClientTask(
        round=1,
        client_index=client,
        account=f"client-{client:03d}",
        data=SYNTHETIC,
        model=LOGREG,
        training=TrainingConfig(epochs=5, batch_size=10, lr=0.05),
        dp=dp,
        seed=100 + client,
        proximal_mu=mu,
    )
    return run_client_task(task, _global()).weights


def _flat(weights: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate(
        [np.asarray(weights[k], dtype=np.float64).ravel() for k in sorted(weights)]
    )


@pytest.mark.parametrize("dp", [None, DP], ids=["sgd", "dp_sgd"])
def test_proximal_term_shrinks_client_drift(dp: DPSpec | None) -> None:
    start = _flat(_global())
    clients = range(4)
    plain = np.stack([_flat(_train(c, 0.0, dp)) for c in clients])
    prox = np.stack([_flat(_train(c, 1.0, dp)) for c in clients])

    # Each local model stays closer to the global model it started from ...
    drift_plain = np.linalg.norm(plain - start, axis=1)
    drift_prox = np.linalg.norm(prox - start, axis=1)
    assert (drift_prox < drift_plain).all(), (drift_prox, drift_plain)
    # ... and the local models are less dissimilar to one another (client drift).
    spread_plain = np.linalg.norm(plain - plain.mean(axis=0), axis=1).mean()
    spread_prox = np.linalg.norm(prox - prox.mean(axis=0), axis=1).mean()
    assert spread_prox < spread_plain


def test_mu_from_the_scenario_reaches_only_fedprox() -> None:
    assert proximal_mu("fedprox", {"proximal_mu": 0.25}) == 0.25
    assert proximal_mu("fedprox", {}) == 0.0
    assert proximal_mu("fedavg", {}) == 0.0


SMALL = ["clients.count=3", "rounds=2", "training.epochs=1", "privacy.budget=null"]


def _model_bytes(tmp_path: Path, name: str, *extra: str) -> bytes:
    out = tmp_path / name
    scenario = load_scenario(ROOT / "scenarios" / "quickstart.yaml", [*SMALL, *extra])
    run_scenario(scenario, out, engine="inprocess")
    return (out / "model.safetensors").read_bytes()


def test_fedprox_mu_zero_is_fedavg_byte_for_byte_and_mu_changes_the_model(
    tmp_path: Path,
) -> None:
    fedavg = _model_bytes(tmp_path, "fedavg")
    mu_zero = _model_bytes(
        tmp_path, "mu0", "aggregation.strategy=fedprox", "aggregation.params={proximal_mu: 0.0}"
    )
    mu_half = _model_bytes(
        tmp_path, "mu1", "aggregation.strategy=fedprox", "aggregation.params={proximal_mu: 0.5}"
    )

    assert mu_zero == fedavg
    assert mu_half != fedavg
