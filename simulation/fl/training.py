"""Local training and evaluation, shared by the ClientApp and the in-process loop.

A ``ClientTask`` is everything a client needs for one round, sent in the Flower
message as JSON; the ClientApp holds no state of its own. The same
``run_client_task`` runs inside Ray actors (the Flower path) and in-process
(the baseline loop of ``benchmarks/flower_overhead.py``), so the two paths
train identically.

Models, Opacus and evaluation run on the run's device (:func:`resolve_device`),
which the server decides once and sends in every task. On the CPU a run is
bit-for-bit deterministic; on CUDA it is deterministic up to cuDNN's choice of
kernels (the seeds, sampling and noise streams are the same).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from simulation.config.schema import (
    Dataset,
    ModelConfig,
    Partition,
    Scenario,
    TrainingConfig,
)
from simulation.fl.device import DeviceName
from simulation.fl.models import build_model, load_numpy, state_to_numpy
from simulation.fl.node_signing import SignRequest
from simulation.fl.own_data import OwnPartition

if TYPE_CHECKING:
    # Imported by ``DataSpec.build`` only: a deployed node trains on its own
    # partition file and never loads ``datasets`` or scikit-learn (seconds per task).
    from pathlib import Path

    from simulation.fl.federated import FederatedData

log = logging.getLogger("fedmarket.training")

FaultKind = Literal["nan", "wrong_shape", "wrong_dtype", "huge_norm", "crash"]

EVAL_BATCH = 4096
"""Rows per forward pass when evaluating (bounds memory on CIFAR-10/FEMNIST test sets)."""


class DataSpec(BaseModel):
    """How to rebuild the federated dataset (identically on server and clients)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: Dataset
    partition: Partition
    num_clients: int
    seed: int

    @classmethod
    def of(cls, scenario: Scenario) -> DataSpec:
        """The data spec of ``scenario``."""
        return cls(
            dataset=scenario.dataset,
            partition=scenario.partition,
            num_clients=scenario.clients.count,
            seed=scenario.seed,
        )

    def build(self) -> FederatedData:
        """The federated data (memoised per process; read from the run's data file
        instead when :meth:`preload` was given one)."""
        loaded = _PRELOADED.get(self.model_dump_json())
        if loaded is not None:
            return loaded
        from simulation.fl.data import build_federated_data

        return build_federated_data(self.dataset, self.partition, self.num_clients, self.seed)

    def preload(self, path: Path) -> None:
        """Make :meth:`build` return the data the driver wrote to ``path``
        (``simulation.fl.data_file``) rather than build it again in this process."""
        from simulation.fl.data_file import load_federated

        key = self.model_dump_json()
        if key not in _PRELOADED:
            _PRELOADED[key] = load_federated(path, key)


_PRELOADED: dict[str, FederatedData] = {}
"""Federated data read from a run's data file, by ``DataSpec`` JSON (see ``preload``)."""


class DPSpec(BaseModel):
    """The DP-SGD parameters for one client-round (``noise_multiplier`` already calibrated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    noise_multiplier: float
    max_grad_norm: float
    grad_sample_mode: Literal["ghost", "hooks"]
    publish_train_metrics: bool = False


class ClientTask(BaseModel):
    """One client's work for one round, as sent in the train message."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    round: int
    client_index: int
    account: str
    data: DataSpec
    model: ModelConfig
    training: TrainingConfig
    dp: DPSpec | None
    seed: int
    behaviour: str | None = None  # agents.training.behaviour_to_config(...) JSON
    fault: FaultKind | None = None  # fault injection: a corrupted client
    data_indices: tuple[int, ...] | None = None  # Sybil identities: rows of the owner's data
    device: DeviceName = "cpu"  # resolved by the server (resolve_device), never "auto"
    proximal_mu: float = Field(0.0, ge=0.0)  # FedProx μ (0: plain local SGD, FedAvg's)
    sign: SignRequest | None = None  # deployed nodes sign their contribution (node_signing)


@dataclass(frozen=True)
class TrainResult:
    """What a client sends back: new weights and the facts the server accounts with."""

    weights: dict[str, np.ndarray]
    num_examples: int
    train_loss: float
    train_accuracy: float
    steps: int
    sample_rate: float
    seconds: float


GHOST_MIN_WORK = 1_000_000
"""Batch size × trainable parameters above which ghost clipping beats per-sample hooks.

Measured on this project's 2-core CPU machine (one client-round of digits, 1 thread):
MLP(64) at batch 16 (77k): ghost 95 ms vs hooks 72 ms; MLP(256) at batch 16 (300k):
90 vs 83 ms; MLP(256, 256) at batch 64 (5.4M): 45 vs 159 ms; MLP(1024) at batch 64
(4.9M): 42 vs 123 ms. Hooks materialise B per-sample gradients (cost ∝ B × params);
ghost clipping pays a second backward pass instead, which wins only for larger work.
"""


def choose_grad_sample_mode(
    model: nn.Module, requested: str, batch_size: int = 1
) -> Literal["ghost", "hooks"]:
    """The per-sample clipping implementation for ``requested`` (``auto``, ``ghost``, ``hooks``).

    ``auto`` picks ghost clipping (Li et al. 2022), which never materialises
    per-sample gradients, when every trainable layer supports it *and* the work
    (batch size × trainable parameters) reaches :data:`GHOST_MIN_WORK`; otherwise
    Opacus' per-sample gradient hooks, which are faster for small models.
    """
    from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import (
        GradSampleModuleFastGradientClipping,
    )

    if requested in ("ghost", "hooks"):
        return requested  # type: ignore[return-value]
    supported = tuple(GradSampleModuleFastGradientClipping.NORM_SAMPLERS)
    trainable = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(False))]
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # Opacus looks norm samplers up by exact type: an RNNLinear (DPLSTM) is no Linear here.
    if all(type(m) in supported for m in trainable) and batch_size * params >= GHOST_MIN_WORK:
        return "ghost"
    return "hooks"


def _optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def _as_input(x: np.ndarray, input_shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(-1, *input_shape)


class ProximalTerm:
    """FedProx's proximal term ``μ/2 ‖w − wᵗ‖²`` (Li et al. 2020, Eq. 2), as a gradient.

    ``wᵗ`` is the global model the round started from (the model's parameters
    when this object is built). :meth:`step` adds the term's gradient
    ``μ (w − wᵗ)`` to every parameter's gradient right before the optimizer's
    update. Under DP-SGD the addition comes *after* Opacus' privacy step:
    Opacus replaces ``p.grad`` by the clipped, noised per-sample sum, so a term
    added to the loss would be clipped and noised away; the proximal gradient
    depends only on the weights, not on private data, and needs no noise.
    """

    def __init__(self, model: nn.Module, mu: float) -> None:
        self.mu = float(mu)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.anchor = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def add_gradient(self) -> None:
        """``p.grad += μ (p − p_anchor)`` for every trainable parameter."""
        for p, a in zip(self.params, self.anchor, strict=True):
            term = self.mu * (p - a)
            if p.grad is None:
                p.grad = term
            else:
                p.grad.add_(term)

    def step(self, optimizer: torch.optim.Optimizer, private: bool) -> None:
        """One optimizer step with the proximal gradient added (after DP's privacy step)."""
        if not private:
            self.add_gradient()
            optimizer.step()
            return
        # Opacus' DPOptimizer.step() is ``if pre_step(): original_optimizer.step()``;
        # pre_step clips, noises and scales p.grad (and informs the accountant).
        if optimizer.pre_step():  # type: ignore[attr-defined]
            self.add_gradient()
            optimizer.original_optimizer.step()  # type: ignore[attr-defined]


class FreshMinibatches:
    """``steps`` minibatches of ``min(batch_size, rows)`` rows, each drawn afresh
    without replacement from the whole shard by ``generator`` (``training.local_steps``).

    Distributed SGD's worker computes one gradient per iteration on a new random
    minibatch of its data (Baruch et al. 2019's workers take a minibatch of 128 of
    their ~1,176 MNIST rows per iteration); an epoch of a shuffled loader instead
    sees every row once per round, so a worker with a small shard fits it. The draws
    are independent across steps (a row may recur in the next step) and come from the
    client-round's seeded stream, so a client-round is reproducible. An empty shard
    gives no batches (no steps), as an empty loader does.
    """

    def __init__(
        self, dataset: TensorDataset, batch_size: int, steps: int, generator: torch.Generator
    ) -> None:
        self.inputs, self.labels = dataset.tensors
        self.size = min(batch_size, len(self.labels))
        self.steps = steps if self.size > 0 else 0
        self.generator = generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rows = len(self.labels)
        for _ in range(self.steps):
            idx = torch.randperm(rows, generator=self.generator)[: self.size]
            yield self.inputs[idx], self.labels[idx]


def local_train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    input_shape: tuple[int, ...],
    cfg: TrainingConfig,
    dp: DPSpec | None,
    generator: torch.Generator,
    proximal_mu: float = 0.0,
) -> tuple[float, float, int, float]:
    """Train ``model`` in place for ``cfg.epochs`` epochs (or ``cfg.local_steps`` fresh
    minibatches, :class:`FreshMinibatches`); return (loss, accuracy, steps, q).

    With ``dp`` set, Opacus' ``PrivacyEngine`` wraps model, optimizer and loader
    (Poisson sampling, per-sample clipping, Gaussian noise); ``generator`` seeds
    both the sampling and the noise, so a client-round is reproducible. Training
    runs on the model's device; on CUDA the noise comes from a CUDA generator
    seeded from ``generator``. With ``proximal_mu > 0`` every step also pulls the
    weights towards the starting (global) model by FedProx's proximal term
    (:class:`ProximalTerm`); the reported loss is the data loss alone.
    """
    device = _device_of(model)
    proximal = ProximalTerm(model, proximal_mu) if proximal_mu > 0 else None
    dataset = TensorDataset(_as_input(x, input_shape), torch.from_numpy(y.astype(np.int64)))
    loader: Any = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=generator)
    optimizer = _optimizer(model, cfg)
    criterion: Any = nn.CrossEntropyLoss()
    sample_rate = 1.0 / max(len(loader), 1)
    if cfg.local_steps is not None:
        if dp is not None:
            raise ValueError("training.local_steps cannot be honoured under DP-SGD")
        loader = FreshMinibatches(dataset, cfg.batch_size, cfg.local_steps, generator)
        sample_rate = loader.size / max(len(dataset), 1)
    if dp is not None:
        train_model, optimizer, criterion, loader = _make_private(
            model, optimizer, criterion, loader, dp, generator
        )
        sample_rate = loader.sample_rate
    else:
        train_model = model
    train_model.train()
    steps, seen, correct, loss_sum = 0, 0, 0, 0.0
    with warnings.catch_warnings():
        # Opacus' per-sample hooks are full backward hooks on every layer; on the
        # first layer no input requires grad, so torch notes that the hook sees only
        # output gradients — exactly what Opacus' grad samplers use.
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients")
        for _ in range(1 if cfg.local_steps is not None else cfg.epochs):
            for xb, yb in loader:
                steps += 1
                optimizer.zero_grad()
                xb, yb = xb.to(device), yb.to(device)
                # An empty Poisson batch still takes the full step: Opacus clips no
                # per-sample gradient, adds the Gaussian noise and counts the step,
                # the subsampled Gaussian mechanism the accountant composes.
                out = train_model(xb)
                loss = criterion(out, yb)
                loss.backward()
                if proximal is None:
                    optimizer.step()
                else:
                    proximal.step(optimizer, private=dp is not None)
                if len(yb) == 0:
                    continue  # the mean loss of no examples is NaN: nothing to report
                seen += len(yb)
                loss_sum += float(loss.detach()) * len(yb)
                correct += int((out.argmax(dim=1) == yb).sum())
    return loss_sum / max(seen, 1), correct / max(seen, 1), steps, sample_rate


def _make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: Any,
    loader: DataLoader[Any],
    dp: DPSpec,
    generator: torch.Generator,
) -> tuple[nn.Module, Any, Any, Any]:
    """Opacus' ``make_private`` (Poisson sampling), checked against the schedule the
    server's accountant and budget check predict (:func:`poisson_schedule`)."""
    from opacus import PrivacyEngine

    from simulation.fl.privacy import poisson_schedule

    q, per_epoch = poisson_schedule(len(loader.dataset), loader.batch_size or 1)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        # "Secure RNG turned off": deliberate, reproducibility needs seeded noise.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="rdp", secure_mode=False)
    made = engine.make_private(
        module=model,
        optimizer=optimizer,
        criterion=criterion,
        data_loader=loader,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,
        noise_generator=_noise_generator(generator, _device_of(model)),
        grad_sample_mode=dp.grad_sample_mode,
    )
    if dp.grad_sample_mode == "ghost":
        train_model, dp_optimizer, criterion, dp_loader = made
    else:
        train_model, dp_optimizer, dp_loader = made
    if dp_loader.sample_rate != q or len(dp_loader) != per_epoch:
        raise RuntimeError(
            f"Opacus samples at q={dp_loader.sample_rate} for {len(dp_loader)} steps per "
            f"epoch, the accountant predicts q={q} for {per_epoch}"
        )
    return train_model, dp_optimizer, criterion, dp_loader


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _noise_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """Opacus draws noise on the parameters' device, so it needs a generator there."""
    if device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Class scores (logits) of ``model`` on ``x``, on the model's device, in batches of
    :data:`EVAL_BATCH` rows."""
    model.eval()
    device = _device_of(model)
    inputs = _as_input(x, input_shape)
    if len(inputs) <= EVAL_BATCH:
        return model(inputs.to(device)).cpu().numpy()
    chunks = [
        model(inputs[i : i + EVAL_BATCH].to(device)).cpu().numpy()
        for i in range(0, len(inputs), EVAL_BATCH)
    ]
    return np.concatenate(chunks)


def evaluate(
    model: nn.Module, x: np.ndarray, y: np.ndarray, input_shape: tuple[int, ...]
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``."""
    if len(y) == 0:
        return float("nan"), float("nan")
    return scores(predict(model, x, input_shape), y)


def scores(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of class scores ``logits`` against labels ``y``
    (so a caller that also needs the predictions runs the model once)."""
    loss, acc, _ = scored(logits, y)
    return loss, acc


def scored(logits: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """:func:`scores` and the predicted classes, one ``argmax`` for both: numpy's and
    torch's both pick the first maximal (or first NaN) score, so the predictions are
    the ones ``logits.argmax(axis=1)`` gives."""
    scores_ = torch.from_numpy(logits)
    target = torch.from_numpy(y.astype(np.int64))
    loss = float(nn.functional.cross_entropy(scores_, target))
    pred = scores_.argmax(dim=1)
    acc = float((pred == target).float().mean())
    return loss, acc, pred.numpy()


def _task_rows(
    task: ClientTask, own: OwnPartition | None
) -> tuple[np.ndarray, np.ndarray, int, tuple[int, ...]]:
    """``(x, y, num_classes, input_shape)`` the task trains on: the node's own
    partition when it holds one (Deployment Engine), else rebuilt from the spec."""
    if own is not None:
        if task.data_indices is not None or task.client_index != own.partition_id:
            raise ValueError(
                f"a task for client {task.client_index} reached the node holding "
                f"partition {own.partition_id}"
            )
        return own.x, own.y, own.num_classes, own.input_shape
    data = task.data.build()
    if task.data_indices is not None:
        idx = np.asarray(task.data_indices, dtype=np.int64)
        x, y = data.x_train[idx], data.y_train[idx]
    else:
        x, y = data.client(task.client_index)
    return x, y, data.num_classes, data.input_shape


def run_client_task(
    task: ClientTask, global_weights: dict[str, np.ndarray], own: OwnPartition | None = None
) -> TrainResult:
    """Everything a ClientApp does for a train message, without Flower; ``own`` is the
    node's own partition (``simulation.fl.own_data``), if it holds one."""
    start = time.perf_counter()
    torch.set_num_threads(1)
    x, y, num_classes, input_shape = _task_rows(task, own)
    if task.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"{task.account}: the task asks for cuda but this process sees no CUDA device "
            "(is resources.client_gpus > 0?)"
        )
    gen = torch.Generator().manual_seed(task.seed)
    rng = np.random.default_rng(task.seed)

    behaviour = None
    ctx = None
    if task.behaviour:
        from agents.training import RoundContext, behaviour_from_config

        behaviour = behaviour_from_config(task.behaviour)
        ctx = RoundContext(
            round=task.round,
            client=task.account,
            num_classes=num_classes,
            rng=rng,
            num_examples=len(y),
        )
        x, y = behaviour.prepare_data(x, y, ctx)

    model = build_model(task.model, input_shape, num_classes, gen, task.device)
    load_numpy(model, global_weights)
    loss, acc, steps, q = float("nan"), float("nan"), 0, 0.0
    if behaviour is None or behaviour.trains:
        loss, acc, steps, q = local_train(
            model, x, y, input_shape, task.training, task.dp, gen, task.proximal_mu
        )
    if task.dp is not None and not task.dp.publish_train_metrics:
        # Loss and accuracy on the private batches are unnoised functions of the
        # data that the DP guarantee does not cover: not sent (docs/privacy.md).
        loss, acc = float("nan"), float("nan")
    weights = state_to_numpy(model)
    if behaviour is not None and ctx is not None:
        keys = list(global_weights)
        new = behaviour.transform_update(
            [global_weights[k] for k in keys], [weights[k] for k in keys], ctx
        )
        weights = {
            k: np.asarray(v, dtype=global_weights[k].dtype) for k, v in zip(keys, new, strict=True)
        }
    if task.fault is not None:
        weights = inject_fault(task.fault, weights)
    return TrainResult(
        weights=weights,
        num_examples=len(y),
        train_loss=loss,
        train_accuracy=acc,
        steps=steps,
        sample_rate=q,
        seconds=time.perf_counter() - start,
    )


def inject_fault(kind: FaultKind, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Corrupt an update the way broken or hostile clients do (tests the server's checks)."""
    first = next(iter(weights))
    out = dict(weights)
    if kind == "nan":
        bad = out[first].copy()
        bad.flat[0] = np.nan
        out[first] = bad
    elif kind == "wrong_shape":
        out[first] = np.zeros((*out[first].shape[:-1], out[first].shape[-1] + 1), np.float32)
    elif kind == "wrong_dtype":
        out[first] = out[first].astype(np.float64)
    elif kind == "huge_norm":
        out[first] = out[first] * np.float32(1e9)
    elif kind == "crash":
        raise RuntimeError("injected client crash")
    return out
