"""``training.local_steps``: a fixed number of fresh minibatches per round instead of
epochs (distributed SGD's worker, Baruch et al. 2019), and the scenario errors where
it cannot be honoured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from simulation.config.schema import TrainingConfig
from simulation.errors import ScenarioError
from simulation.fl.training import DPSpec, FreshMinibatches, local_train
from simulation.scenario.load import load_scenario


def _rows(n: int, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, 2, n)


def _batches(n: int, batch: int, steps: int, seed: int) -> list[list[int]]:
    """The rows (by their id, stored as the input) of each fresh minibatch."""
    ids = torch.arange(n, dtype=torch.float32).reshape(n, 1)
    data = torch.utils.data.TensorDataset(ids, torch.zeros(n, dtype=torch.int64))
    gen = torch.Generator().manual_seed(seed)
    return [[int(v) for v in xb.flatten()] for xb, _ in FreshMinibatches(data, batch, steps, gen)]


def test_each_step_draws_a_fresh_minibatch_of_distinct_rows_from_the_whole_shard() -> None:
    batches = _batches(10, 4, 50, seed=3)
    assert len(batches) == 50
    assert all(len(b) == 4 and len(set(b)) == 4 for b in batches)  # without replacement
    assert all(0 <= i < 10 for b in batches for i in b)
    # Fresh draws, not a cycle over fixed batches: 50 draws of 4 of 10 rows hit every
    # row, and consecutive batches are not a fixed partition of the shard.
    assert {i for b in batches for i in b} == set(range(10))
    assert len({tuple(sorted(b)) for b in batches}) > 10 // 4 + 1
    assert _batches(10, 4, 50, seed=3) == batches  # the client-round's seeded stream
    assert _batches(10, 4, 50, seed=4) != batches


def test_a_shard_smaller_than_the_batch_is_taken_whole_and_an_empty_one_takes_no_step() -> None:
    assert [sorted(b) for b in _batches(3, 128, 2, seed=0)] == [[0, 1, 2], [0, 1, 2]]
    assert _batches(0, 4, 5, seed=0) == []


def test_one_local_step_on_a_shard_within_the_batch_is_one_full_batch_gradient_step() -> None:
    """Hand-derived: softmax regression's mean cross-entropy gradient over all rows is
    ``(p - onehot)ᵀ x / n`` (weights) and ``mean(p - onehot)`` (bias); one SGD step at
    lr 0.1 moves the weights by -0.1 times it, whatever ``epochs`` says."""
    x, y = _rows(6)
    model = nn.Linear(3, 2)
    w0, b0 = model.weight.detach().numpy().copy(), model.bias.detach().numpy().copy()
    cfg = TrainingConfig(batch_size=128, lr=0.1, local_steps=1)
    _, _, steps, q = local_train(model, x, y, (3,), cfg, None, torch.Generator().manual_seed(1))
    logits = x.astype(np.float64) @ w0.T + b0
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    err = p - np.eye(2)[y]
    assert (steps, q) == (1, 1.0)
    np.testing.assert_allclose(model.weight.detach().numpy(), w0 - 0.1 * err.T @ x / 6, atol=1e-6)
    np.testing.assert_allclose(model.bias.detach().numpy(), b0 - 0.1 * err.mean(0), atol=1e-6)


def test_local_steps_take_that_many_steps_of_batch_size_rows_instead_of_epochs() -> None:
    x, y = _rows(20)
    cfg = TrainingConfig(batch_size=4, local_steps=7)
    gen = torch.Generator().manual_seed(0)
    _, _, steps, q = local_train(nn.Linear(3, 2), x, y, (3,), cfg, None, gen)
    assert (steps, q) == (7, 4 / 20)
    epochs = TrainingConfig(epochs=3, batch_size=4)  # the default: 3 epochs of 5 batches
    _, _, steps, q = local_train(nn.Linear(3, 2), x, y, (3,), epochs, None, gen)
    assert (steps, q) == (15, 1 / 5)


def test_local_train_refuses_local_steps_under_dp_sgd() -> None:
    x, y = _rows(8)
    dp = DPSpec(noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode="hooks")
    cfg = TrainingConfig(local_steps=1)
    with pytest.raises(ValueError, match=r"training\.local_steps"):
        local_train(nn.Linear(3, 2), x, y, (3,), cfg, dp, torch.Generator().manual_seed(0))


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text("clients: {count: 10}\ntraining: {local_steps: 2}\n" + text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    return [f"{p.field} -> {p.reason}" for p in exc.value.problems]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "privacy: {mode: dp_sgd, noise_multiplier: 1.0}\n",
            "DP-SGD's accountant assumes Poisson-sampled epochs (privacy.mode)",
        ),
        (
            "population:\n  - {group: slow, count: 2, behaviour: honest,"
            " params: {local_epoch_multiplier: 3.0}}\n",
            "population.0 (honest) trains 3 local epochs",
        ),
        (
            "population:\n  - {group: bd, count: 2, behaviour: backdoor,"
            " params: {local_epochs: 4}}\n",
            "population.0 (backdoor) trains 4 local epochs",
        ),
        (
            "market:\n  behaviours:\n    - {behaviour: rational_participants,"
            " params: {count: 10}}\n",
            "market.behaviours.0 (rational_participants) costs in epochs",
        ),
    ],
)
def test_local_steps_where_epochs_matter_is_a_scenario_error(
    tmp_path: Path, text: str, reason: str
) -> None:
    expected = f"training.local_steps -> training.local_steps (2) replaces epochs; {reason}"
    assert expected in _problems(tmp_path, text)


def test_an_epoch_count_beside_local_steps_is_a_scenario_error(tmp_path: Path) -> None:
    # local_steps replaces epochs, so an explicit epoch count would be silently ignored.
    path = tmp_path / "s.yaml"
    path.write_text("clients: {count: 10}\ntraining: {local_steps: 2, epochs: 5}\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    assert "training.epochs (5) cannot be honoured" in str(exc.value)
    path.write_text("clients: {count: 10}\ntraining: {local_steps: 2, epochs: 1}\n")
    assert load_scenario(path).training.local_steps == 2  # one epoch's worth: nothing lost


def test_a_badly_named_group_10_does_not_hide_group_1s_local_steps_conflict(
    tmp_path: Path,
) -> None:
    groups = [f"  - {{group: g{i}, count: 1, behaviour: honest}}" for i in range(11)]
    groups[1] = (
        "  - {group: g1, count: 1, behaviour: honest, params: {local_epoch_multiplier: 3.0}}"
    )
    groups[10] = "  - {group: g10, count: 1, behaviour: no_such_behaviour}"
    problems = _problems(tmp_path, "population:\n" + "\n".join(groups) + "\n")
    assert any("population.1 (honest) trains 3 local epochs" in p for p in problems), problems
    assert any(p.startswith("population.10") for p in problems), problems


def test_local_steps_with_plain_training_validates_and_is_hashed_only_when_set(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("clients: {count: 10}\n")
    plain = load_scenario(path)
    path.write_text("clients: {count: 10}\ntraining: {local_steps: 1}\n")
    stepped = load_scenario(path)
    assert stepped.training.local_steps == 1 and plain.training.local_steps is None
    # None (the default) leaves the scenario's hash, the ledger's name of it, as it was
    # before the field existed (that hash computed at 3c4ec9b, which has no local_steps).
    assert plain.sha256() == "f195d7b9bf3c73d6ca05bd0a4a418bfe0617dfd4d68fc671e8270da9c2f7310f"
    assert stepped.sha256() != plain.sha256()
