"""Model registry: the names scenario files use, each a small torch module.

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


def build_model(
    cfg: ModelConfig,
    input_shape: tuple[int, ...],
    num_classes: int,
    generator: torch.Generator,
) -> nn.Module:
    """Build a registered model and initialise it from ``generator`` (PyTorch's default
    schemes: Kaiming-uniform weights, uniform biases bounded by 1/√fan_in)."""
    model = MODELS.get(cfg.name)(cfg, input_shape, num_classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    fan_in = module.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return model


def state_to_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's parameters as named numpy arrays (copies)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_numpy(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Load named numpy arrays into ``model`` (strict: names and shapes must match)."""
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})


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
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
    finally:
        for h in handles:
            h.remove()
    return total


def parameter_count(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters())
