"""One CIFAR-10 client-round on the CPU and on the GPU, side by side in one run.

A client-round is what a simulated client does per round: ``local_train`` of the
CIFAR ResNet on its share of CIFAR-10 (default: 500 images, a 100-client split
of the 50,000 training images) for one epoch, with DP-SGD (Opacus, per-sample
clipping and noise) unless ``--no-dp``. The images are random tensors of
CIFAR-10's shape: the cost of a round does not depend on pixel values, and the
benchmark needs no download. The CPU runs one thread, as a Ray client actor does.

Without CUDA (the CPU-only torch wheel, or no GPU) it says so, times the CPU
alone and exits 0.

    .venv/bin/python benchmarks/gpu.py [--model resnet20] [--examples 500] [--no-dp]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from simulation.config.schema import ModelConfig, TrainingConfig
from simulation.fl.device import cuda_unavailable_reason
from simulation.fl.models import build_model
from simulation.fl.training import DPSpec, choose_grad_sample_mode, local_train

SHAPE, CLASSES = (3, 32, 32), 10


def client_round(device: str, args: argparse.Namespace, seed: int) -> float:
    """Seconds of one client-round on ``device`` (the clock stops after CUDA syncs)."""
    rng = np.random.default_rng(seed)
    x = rng.random((args.examples, *SHAPE), dtype=np.float32)
    y = rng.integers(0, CLASSES, size=args.examples)
    model = build_model(
        ModelConfig(name=args.model), SHAPE, CLASSES, torch.Generator().manual_seed(seed), device
    )
    cfg = TrainingConfig(epochs=1, batch_size=args.batch, lr=0.05, device=device)
    dp = None
    if args.dp:
        mode = choose_grad_sample_mode(model, "auto", args.batch)
        dp = DPSpec(noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode=mode)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    local_train(model, x, y, SHAPE, cfg, dp, torch.Generator().manual_seed(seed))
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=["resnet8", "resnet20"])
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-dp", dest="dp", action="store_false")
    args = parser.parse_args()
    torch.set_num_threads(1)
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    else:
        print(f"GPU: none ({cuda_unavailable_reason()}); timing the CPU only")
    what = "DP-SGD" if args.dp else "SGD"
    print(f"one client-round: {args.model}, {args.examples} CIFAR-10-shaped images, {what}")
    times: dict[str, float] = {}
    for device in devices:
        client_round(device, args, seed=0)  # warm-up: allocator, cuDNN autotune, imports
        runs = [client_round(device, args, seed=s) for s in range(1, args.repeats + 1)]
        times[device] = statistics.median(runs)
    print(f"{'device':<8}{'median s':>10}{'images/s':>10}{'× CPU':>8}")
    for device, secs in times.items():
        speedup = times["cpu"] / secs
        print(f"{device:<8}{secs:>10.3f}{args.examples / secs:>10.0f}{speedup:>8.1f}")


if __name__ == "__main__":
    main()
