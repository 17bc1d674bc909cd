"""Models (deterministic init, FLOP counts) and the server's update checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simulation.config.schema import ModelConfig
from simulation.fl.models import MODELS, build_model, flops_per_example, state_to_numpy
from simulation.world.screening import check_update


def test_registry_lists_valid_names_on_typo() -> None:
    with pytest.raises(
        ValueError,
        match="unknown model 'mpl'; valid names: char_lstm, cnn, fedavg_cnn, lenet5, logreg, mlp, ",
    ):
        MODELS.get("mpl")


@pytest.mark.parametrize("name", ["logreg", "mlp", "cnn"])
def test_init_is_deterministic_and_shapes_fit(name: str) -> None:
    cfg = ModelConfig(name=name)  # type: ignore[arg-type]
    a = build_model(cfg, (1, 8, 8), 10, torch.Generator().manual_seed(1))
    b = build_model(cfg, (1, 8, 8), 10, torch.Generator().manual_seed(1))
    c = build_model(cfg, (1, 8, 8), 10, torch.Generator().manual_seed(2))
    sa, sb, sc = state_to_numpy(a), state_to_numpy(b), state_to_numpy(c)
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert not all(np.array_equal(sa[k], sc[k]) for k in sa)
    assert a(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_flops_hand_computed() -> None:
    g = torch.Generator().manual_seed(0)
    logreg = build_model(ModelConfig(name="logreg"), (64,), 10, g)
    assert flops_per_example(logreg, (64,)) == 2 * 64 * 10
    mlp = build_model(ModelConfig(name="mlp", hidden=(32,)), (64,), 10, g)
    assert flops_per_example(mlp, (64,)) == 2 * (64 * 32 + 32 * 10)
    cnn = build_model(ModelConfig(name="cnn", channels=(4,)), (1, 8, 8), 10, g)
    # conv 3×3, 1→4 channels on 8×8 (padding 1): 2·9·1·(4·8·8); then 4·4·4 → 10.
    assert flops_per_example(cnn, (1, 8, 8)) == 2 * 9 * 1 * 4 * 64 + 2 * 64 * 10


GLOBAL = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}


def test_check_update_accepts_a_sane_update() -> None:
    upd = {"w": np.full((2, 3), 0.1, np.float32), "b": np.ones(3, np.float32)}
    assert check_update(GLOBAL, upd, max_norm=10.0) is None


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (
            {"w": np.full((2, 3), np.nan, np.float32), "b": np.zeros(3, np.float32)},
            "non_finite: w",
        ),
        (
            {"w": np.zeros((2, 4), np.float32), "b": np.zeros(3, np.float32)},
            "wrong_shape: w: [2, 4] != [2, 3]",
        ),
        (
            {"w": np.zeros((2, 3), np.float64), "b": np.zeros(3, np.float32)},
            "wrong_dtype: w: float64 != float32",
        ),
        ({"w": np.zeros((2, 3), np.float32)}, "wrong_tensors: missing ['b'], unexpected []"),
        (
            {"w": np.full((2, 3), 100.0, np.float32), "b": np.zeros(3, np.float32)},
            "norm_exceeded: 244.9 > 10",
        ),
    ],
)
def test_check_update_rejects_with_reason(update: dict[str, np.ndarray], reason: str) -> None:
    assert check_update(GLOBAL, update, max_norm=10.0) == reason


def test_auto_grad_sample_mode_follows_measured_crossover() -> None:
    from simulation.fl.training import GHOST_MIN_WORK, choose_grad_sample_mode

    g = torch.Generator().manual_seed(0)
    small = build_model(ModelConfig(name="mlp", hidden=(64,)), (64,), 10, g)  # 4,810 params
    big = build_model(ModelConfig(name="mlp", hidden=(256, 256)), (64,), 10, g)  # 85,002
    cnn = build_model(ModelConfig(name="cnn"), (1, 8, 8), 10, g)
    assert 16 * 4810 < GHOST_MIN_WORK <= 64 * 85_002
    assert choose_grad_sample_mode(small, "auto", 16) == "hooks"
    assert choose_grad_sample_mode(big, "auto", 64) == "ghost"
    assert choose_grad_sample_mode(cnn, "auto", 512) == "hooks"  # conv has no ghost norm
    assert choose_grad_sample_mode(small, "ghost", 16) == "ghost"  # explicit wins
