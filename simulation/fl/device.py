"""The device a run trains and evaluates on: decided once, by the server, and recorded.

Imports torch and nothing heavier, so validation can ask whether CUDA is there
when a scenario names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from simulation.config.schema import ResourcesConfig, TrainingConfig
from simulation.errors import Problem, ScenarioError

__all__ = ["DeviceChoice", "DeviceName", "cuda_unavailable_reason", "resolve_device"]

DeviceName = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class DeviceChoice:
    """The device a run trains and evaluates on, and why (recorded in the manifest)."""

    requested: str
    used: DeviceName
    reason: str
    name: str | None = None

    def to_json(self) -> dict[str, str | None]:
        """The manifest's ``device`` section."""
        return {
            "requested": self.requested,
            "used": self.used,
            "reason": self.reason,
            "name": self.name,
        }


def resolve_device(training: TrainingConfig, resources: ResourcesConfig) -> DeviceChoice:
    """The run's device for ``training.device``: ``cpu``; ``cuda`` (a scenario error if
    torch sees no CUDA device); or ``auto``, which is CUDA only when torch sees a GPU
    *and* the clients have a GPU share (``resources.client_gpus`` > 0), and says why."""
    available = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if available else None
    if training.device == "cpu":
        return DeviceChoice("cpu", "cpu", "training.device is cpu")
    if training.device == "cuda":
        if not available:
            reason = f"cuda requested, but {cuda_unavailable_reason()}"
            raise ScenarioError([Problem("scenario", "training.device", reason)])
        return DeviceChoice("cuda", "cuda", "training.device is cuda", gpu)
    if not available:
        return DeviceChoice("auto", "cpu", f"auto: {cuda_unavailable_reason()}")
    if resources.client_gpus == 0:
        return DeviceChoice(
            "auto", "cpu", "auto: CUDA is available but resources.client_gpus is 0", gpu
        )
    return DeviceChoice("auto", "cuda", "auto: CUDA is available and clients have a GPU share", gpu)


def cuda_unavailable_reason() -> str:
    """Why CUDA cannot be used here, naming the torch build."""
    built = torch.version.cuda
    if built is None:
        return f"torch {torch.__version__} is a CPU-only build"
    return f"torch {torch.__version__} (CUDA {built}) sees no CUDA device"
