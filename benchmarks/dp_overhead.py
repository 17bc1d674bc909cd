"""DP-SGD versus non-private training for one client-round, measured side by side.

Prints wall time per client-round for: non-private SGD, DP-SGD with ghost
clipping, and DP-SGD with per-sample gradient hooks; and the ratios DP /
non-private. Target (later work): DP ≤ 3× non-private.

    .venv/bin/python benchmarks/dp_overhead.py [--repeats 20] [--model mlp]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from simulation.config.schema import DatasetConfig, IidPartition, ModelConfig, TrainingConfig
from simulation.fl.data import build_federated_data
from simulation.fl.models import build_model, state_to_numpy
from simulation.fl.training import DPSpec, local_train


def one_round(model_cfg: ModelConfig, dp: DPSpec | None, seed: int, clients: int) -> float:
    data = build_federated_data(DatasetConfig(name="digits"), IidPartition(), clients, seed=0)
    x, y = data.client(seed % clients)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(model_cfg, data.input_shape, data.num_classes, gen)
    cfg = TrainingConfig(epochs=2, batch_size=16, lr=0.5)
    start = time.perf_counter()
    local_train(model, x, y, data.input_shape, cfg, dp, gen)
    elapsed = time.perf_counter() - start
    state_to_numpy(model)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--model", default="mlp", choices=["logreg", "mlp", "cnn"])
    parser.add_argument("--clients", type=int, default=10, help="digits split into N clients")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model_cfg = ModelConfig(name=args.model)
    modes: dict[str, DPSpec | None] = {"non-private": None}
    if args.model != "cnn":
        modes["dp ghost"] = DPSpec(
            noise_multiplier=1.5, max_grad_norm=1.0, grad_sample_mode="ghost"
        )
    modes["dp hooks"] = DPSpec(noise_multiplier=1.5, max_grad_norm=1.0, grad_sample_mode="hooks")
    times: dict[str, list[float]] = {m: [] for m in modes}
    for dp in modes.values():  # warm-up: imports, allocator
        one_round(model_cfg, dp, 999, args.clients)
    # Interleave the modes so machine noise hits them alike.
    for r in range(args.repeats):
        for name, dp in modes.items():
            times[name].append(one_round(model_cfg, dp, r, args.clients))
    base = statistics.median(times["non-private"])
    n = len(
        build_federated_data(
            DatasetConfig(name="digits"), IidPartition(), args.clients, 0
        ).partitions[0]
    )
    print(
        f"one client-round: digits, {n} examples, {args.model}, 2 epochs, batch 16; "
        f"median of {args.repeats}"
    )
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"  {name:12s} {med * 1e3:8.1f} ms   ratio {med / base:5.2f}x  "
            f"(p10 {np.percentile(ts, 10) * 1e3:.1f}, p90 {np.percentile(ts, 90) * 1e3:.1f} ms)"
        )


if __name__ == "__main__":
    main()
