"""Model registry: the names scenario files use, each a small torch module.

Besides the small models for the bundled datasets, the standard models of the
papers FedMarket users compare against: LeNet-5 (MNIST, FEMNIST), McMahan et
al. 2017's 2-conv CNN, CIFAR ResNet-8/-20 with GroupNorm, and LEAF's character
LSTM for Shakespeare. All are Opacus-compatible (no BatchNorm; Opacus' own
``DPLSTM``), so DP-SGD can wrap each of them.

Weights are initialised from an explicit ``torch.Generator`` (never the global
RNG), so the same seed gives the same initial model in every process.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from simulation.config.schema import ModelConfig
from simulation.registry import Registry

ModelFactory = Callable[[ModelConfig, tuple[int, ...], int], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


class Flatten(nn.Module):
    """Flatten all but the batch dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


@MODELS.decorator("logreg")
def _logreg(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Multinomial logistic regression (one linear layer)."""
    return nn.Sequential(Flatten(), nn.Linear(math.prod(input_shape), num_classes))


@MODELS.decorator("mlp")
def _mlp(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A ReLU multilayer perceptron with ``cfg.hidden`` widths."""
    layers: list[nn.Module] = [Flatten()]
    width = math.prod(input_shape)
    for h in cfg.hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@MODELS.decorator("cnn")
def _cnn(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Conv(3×3)+ReLU blocks with 2×2 max-pooling while the image is larger than 2×2.

    No batch norm: it mixes samples and is incompatible with per-sample DP.
    """
    if len(input_shape) != 3:
        raise ValueError(f"cnn needs an image input (C, H, W), got {input_shape}")
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for ch in cfg.channels:
        layers += [nn.Conv2d(c, ch, kernel_size=3, padding=1), nn.ReLU()]
        c = ch
        if h >= 4 and w >= 4:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
    layers += [Flatten(), nn.Linear(c * h * w, num_classes)]
    return nn.Sequential(*layers)


def _image(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"{name} needs an image input (C, H, W), got {input_shape}")
    c, h, w = input_shape
    return c, h, w


@MODELS.decorator("lenet5")
def _lenet5(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998) as commonly used for MNIST/FEMNIST: conv 5×5 (6, padded
    by 2) → pool → conv 5×5 (16) → pool → 120 → 84 → classes, ReLU and max-pooling
    instead of the original's tanh and subsampling. 61,706 parameters on MNIST."""
    c, h, w = _image("lenet5", input_shape)
    side_h, side_w = (h // 2 - 4) // 2, (w // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(c, 6, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        Flatten(),
        nn.Linear(16 * side_h * side_w, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )


@MODELS.decorator("fedavg_cnn")
def _fedavg_cnn(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The CNN of McMahan et al. 2017 (FedAvg), §3: two 5×5 convolutions (32 and 64
    channels), each followed by 2×2 max-pooling, a 512-unit ReLU layer and a softmax
    output. 1,663,370 parameters on MNIST (the count TFF's reimplementation states)."""
    c, h, w = _image("fedavg_cnn", input_shape)
    return nn.Sequential(
        nn.Conv2d(c, 32, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        Flatten(),
        nn.Linear(64 * (h // 4) * (w // 4), 512),
        nn.ReLU(),
        nn.Linear(512, num_classes),
    )


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with gcd(32, channels) groups: what Opacus' ``ModuleValidator.fix``
    puts in place of a BatchNorm (Wu & He 2018's 32 groups where they fit)."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


class BasicBlock(nn.Module):
    """He et al. 2016's two 3×3 convolutions with a shortcut; a 1×1 projection (their
    option B) where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = group_norm(c_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), group_norm(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def cifar_resnet(depth: int, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """He et al. 2016's CIFAR ResNet of ``depth`` = 6n + 2 layers (§4.2: 3 stages of n
    blocks, 16/32/64 channels, global average pooling), with GroupNorm in place of
    BatchNorm so per-sample gradients exist (DP-SGD)."""
    c, _, _ = _image(f"resnet{depth}", input_shape)
    if (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has 6n + 2 layers, not {depth}")
    n = (depth - 2) // 6
    layers: list[nn.Module] = [
        nn.Conv2d(c, 16, 3, padding=1, bias=False),
        group_norm(16),
        nn.ReLU(),
    ]
    width = 16
    for stage, channels in enumerate((16, 32, 64)):
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(width, channels, stride))
            width = channels
    layers += [nn.AdaptiveAvgPool2d(1), Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


@MODELS.decorator("resnet8")
def _resnet8(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """ResNet-8 (n = 1), the small CIFAR-10 ResNet of DP federated benchmarks."""
    return cifar_resnet(8, input_shape, num_classes)


@MODELS.decorator("resnet20")
def _resnet20(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """ResNet-20 (n = 3), He et al. 2016's smallest CIFAR-10 ResNet."""
    return cifar_resnet(20, input_shape, num_classes)


class CharLSTM(nn.Module):
    """Next-character prediction (McMahan et al. 2017; LEAF's Shakespeare model): an
    embedding of each of the 80 input characters, stacked LSTMs (default 2 × 256,
    8-dim embedding) and a linear read-out of the last step. The LSTM is Opacus'
    ``DPLSTM``, which computes per-sample gradients (``nn.LSTM`` does not)."""

    def __init__(self, vocab: int, embedding: int, hidden: int, layers: int) -> None:
        from opacus.layers import DPLSTM

        super().__init__()
        self.hidden = hidden
        self.embedding = nn.Embedding(vocab, embedding)
        self.lstm = DPLSTM(embedding, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, vocab)

    def init_lstm(self, generator: torch.Generator) -> None:
        """``nn.LSTM``'s initialisation (every weight and bias uniform in ±1/√hidden),
        drawn from ``generator``."""
        bound = 1.0 / math.sqrt(self.hidden)
        for param in self.lstm.parameters():
            nn.init.uniform_(param, -bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inputs arrive as floats (like every model's); they are character indices.
        out, _ = self.lstm(self.embedding(x.long()))
        logits: torch.Tensor = self.fc(out[:, -1])
        return logits


@MODELS.decorator("char_lstm")
def _char_lstm(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The character LSTM; inputs and outputs share the dataset's alphabet."""
    if len(input_shape) != 1:
        raise ValueError(f"char_lstm needs a sequence of character indices, got {input_shape}")
    return CharLSTM(num_classes, cfg.embedding_dim, cfg.lstm_hidden, cfg.lstm_layers)


def build_model(
    cfg: ModelConfig,
    input_shape: tuple[int, ...],
    num_classes: int,
    generator: torch.Generator,
    device: str = "cpu",
) -> nn.Module:
    """Build a registered model, initialise it from ``generator`` (PyTorch's default
    schemes: Kaiming-uniform weights, uniform biases bounded by 1/√fan_in; N(0, 1)
    embeddings; LSTM cells uniform in ±1/√hidden, as ``nn.LSTM`` does) on the CPU,
    then move it to ``device`` (the same initial weights on every device)."""
    model = MODELS.get(cfg.name)(cfg, input_shape, num_classes)
    with torch.no_grad():
        done: set[int] = set()
        for module in model.modules():
            if isinstance(module, CharLSTM):
                module.init_lstm(generator)
                done.update(id(m) for m in module.lstm.modules())
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, generator=generator)
        for module in model.modules():
            if id(module) in done:
                continue
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    fan_in = module.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return model.to(device)


def state_aliases(model: nn.Module) -> dict[str, str]:
    """State-dict names that are another name of an earlier entry's tensor → that name.

    Opacus' ``DPLSTM`` registers ``nn.LSTM``'s names (``weight_ih_l0``) over its cells'
    own (``l0.ih.weight``); its filter for them misses when the LSTM is a submodule.
    A weight must travel, be aggregated, screened and clipped once, so the aliases
    are left out of every update (and restored when loading).
    """
    seen: dict[tuple[int, tuple[int, ...], torch.dtype], str] = {}
    out: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
        if key in seen:
            out[name] = seen[key]
        else:
            seen[key] = name
    return out


def state_to_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's parameters as named numpy arrays (copies), each tensor once: the first
    of its names (``nn.LSTM``'s for the character LSTM, so exports load into one)."""
    aliases = state_aliases(model)
    return {
        k: v.detach().cpu().numpy().copy()
        for k, v in model.state_dict().items()
        if k not in aliases
    }


def load_numpy(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Load named numpy arrays into ``model`` (strict: names and shapes must match)."""
    full = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
    for alias, name in state_aliases(model).items():
        if name in full:
            full[alias] = full[name]
    model.load_state_dict(full)


def flops_per_example(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Forward-pass FLOPs (2 per multiply-add) of one example, counted with hooks.

    Feeds the timing model: training costs about 3× the forward pass.
    """
    total = 0.0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2.0 * module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2.0 * k * module.in_channels * output[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
    return total


def parameter_count(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters())
