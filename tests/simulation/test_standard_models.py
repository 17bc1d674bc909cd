"""The papers' standard models: parameter counts, Opacus compatibility, DP-SGD training.

Parameter counts are the published one (McMahan et al. 2017 state 1,663,370 for
their MNIST CNN) or derived by hand from the architecture in the comments.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator
from torch import nn

from simulation.config.schema import ModelConfig, TrainingConfig
from simulation.fl.models import build_model, group_norm, parameter_count, state_to_numpy
from simulation.fl.training import DPSpec, choose_grad_sample_mode, local_train

STANDARD = {
    "lenet5": ((1, 28, 28), 10),
    "fedavg_cnn": ((1, 28, 28), 10),
    "resnet8": ((3, 32, 32), 10),
    "resnet20": ((3, 32, 32), 10),
    "char_lstm": ((80,), 81),
}


def make(name: str, seed: int = 0, **kw: object) -> nn.Module:
    shape, classes = STANDARD[name]
    cfg = ModelConfig(name=name, **kw)  # type: ignore[arg-type]
    return build_model(cfg, shape, classes, torch.Generator().manual_seed(seed))


def test_fedavg_cnn_has_the_papers_parameter_count() -> None:
    # McMahan et al. 2017, §3: "... a final softmax output layer (1,663,370 total parameters)".
    assert parameter_count(make("fedavg_cnn")) == 1_663_370


def test_lenet5_parameter_count() -> None:
    # conv1 6·(25·1)+6 = 156; conv2 16·(25·6)+16 = 2,416; 28→28→14→10→5: 16·5·5 = 400;
    # fc 400·120+120 = 48,120; 120·84+84 = 10,164; 84·10+10 = 850.
    assert parameter_count(make("lenet5")) == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706


def _block(c_in: int, c_out: int) -> int:
    """A basic block: two bias-free 3×3 convs, two GroupNorms (2 per channel), and a
    1×1 projection with its GroupNorm when the width changes."""
    convs = 9 * c_in * c_out + 9 * c_out * c_out + 4 * c_out
    return convs + (c_in * c_out + 2 * c_out if c_in != c_out else 0)


@pytest.mark.parametrize(("name", "n"), [("resnet8", 1), ("resnet20", 3)])
def test_cifar_resnet_parameter_count(name: str, n: int) -> None:
    stem = 9 * 3 * 16 + 2 * 16
    stages = n * _block(16, 16)
    stages += _block(16, 32) + (n - 1) * _block(32, 32)
    stages += _block(32, 64) + (n - 1) * _block(64, 64)
    head = 64 * 10 + 10
    assert parameter_count(make(name)) == stem + stages + head
    if name == "resnet20":
        assert stem + stages + head == 272_474  # He et al.'s "0.27M", option-B shortcuts


def test_char_lstm_parameter_count() -> None:
    # embedding 81·8; each LSTM layer: input and hidden maps to 4·256 gates, each with a
    # bias (as nn.LSTM's b_ih and b_hh); read-out 256·81 + 81.
    layer1 = (8 * 1024 + 1024) + (256 * 1024 + 1024)
    layer2 = (256 * 1024 + 1024) + (256 * 1024 + 1024)
    assert parameter_count(make("char_lstm")) == 81 * 8 + layer1 + layer2 + 256 * 81 + 81


def test_group_norm_is_what_opacus_puts_for_batch_norm() -> None:
    for channels in (16, 32, 64):
        fixed = ModuleValidator.fix(nn.Sequential(nn.BatchNorm2d(channels)))[0]
        ours = group_norm(channels)
        assert (ours.num_groups, ours.num_channels) == (fixed.num_groups, fixed.num_channels)


@pytest.mark.parametrize("name", STANDARD)
def test_opacus_validator_passes_and_init_is_seeded(name: str) -> None:
    model = make(name)
    ModuleValidator.validate(model, strict=True)  # raises on any unsupported module
    a, b, c = state_to_numpy(model), state_to_numpy(make(name)), state_to_numpy(make(name, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_char_lstm_takes_per_sample_hooks_not_ghost_clipping() -> None:
    # Opacus has no ghost-clipping norm sampler for DPLSTM's RNNLinear (it is looked up by
    # exact type), so "auto" must pick per-sample hooks whatever the work.
    assert choose_grad_sample_mode(make("char_lstm"), "auto", batch_size=10_000) == "hooks"


@pytest.mark.parametrize("name", STANDARD)
def test_each_model_trains_under_dp_sgd(name: str) -> None:
    small = {"lstm_hidden": 32, "lstm_layers": 2} if name == "char_lstm" else {}
    model = make(name, **small)
    shape, classes = STANDARD[name]
    rng = np.random.default_rng(0)
    n = 24
    if name == "char_lstm":
        x = rng.integers(0, classes, size=(n, *shape)).astype(np.float32)
    else:
        x = rng.random((n, *shape), dtype=np.float32)
    y = rng.integers(0, classes, size=n)
    before = state_to_numpy(model)
    cfg = TrainingConfig(epochs=1, batch_size=8, lr=0.05)
    dp = DPSpec(noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode="hooks")
    loss, acc, steps, q = local_train(model, x, y, shape, cfg, dp, torch.Generator().manual_seed(3))
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0
    assert (steps, q) == (3, pytest.approx(1 / 3))
    after = state_to_numpy(model)
    assert set(after) == set(before)  # Opacus wraps, the state dict names stay
    assert all(not np.array_equal(before[k], after[k]) for k in before if before[k].size > 1)


def test_char_lstm_exchanges_each_weight_once_under_nn_lstm_names() -> None:
    """DPLSTM registers two names per weight; updates carry one (nn.LSTM's), and torch's
    own nn.LSTM loaded with them computes the same logits (an independent reference)."""
    model = make("char_lstm", lstm_hidden=16)
    state = state_to_numpy(model)
    assert sum(v.size for v in state.values()) == parameter_count(model)
    reference = nn.LSTM(8, 16, num_layers=2, batch_first=True)
    reference.load_state_dict(
        {k.removeprefix("lstm."): torch.from_numpy(v) for k, v in state.items() if "lstm." in k}
    )
    x = torch.randint(0, 81, (3, 80), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, _ = reference(model.embedding(x))
        torch.testing.assert_close(model(x.float()), model.fc(out[:, -1]))
