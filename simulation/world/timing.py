"""The simulated clock's model of how long a round takes.

A client's time is compute (3× forward FLOPs per example processed, times a
DP overhead for per-sample clipping, over its speed) plus the model's download
and upload over its link. A synchronous round lasts as long as its slowest
sampled client, plus the server's aggregation time. Speeds are lognormal
around the median, drawn once per client from the seed tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulation.config.schema import TimingConfig


@dataclass(frozen=True)
class TimeModel:
    """Per-client speeds and the constants of the model."""

    cfg: TimingConfig
    speeds_gflops: tuple[float, ...]
    flops_per_example: float
    model_bytes: int

    @classmethod
    def create(
        cls,
        cfg: TimingConfig,
        num_clients: int,
        flops_per_example: float,
        model_bytes: int,
        rng: np.random.Generator,
    ) -> TimeModel:
        """Draw each client's speed: median ``client_gflops``, lognormal σ ``heterogeneity``."""
        speeds = cfg.client_gflops * rng.lognormal(0.0, cfg.heterogeneity, size=num_clients)
        return cls(cfg, tuple(float(s) for s in speeds), flops_per_example, model_bytes)

    def client_seconds(self, client: int, examples_processed: int, dp: bool) -> float:
        """Simulated seconds for ``client`` to download, train on ``examples_processed``
        examples (all epochs), and upload."""
        flops = 3.0 * self.flops_per_example * examples_processed
        if dp:
            flops *= self.cfg.dp_overhead
        compute = flops / (self.speeds_gflops[client] * 1e9)
        network = 2.0 * (self.model_bytes * 8.0 / (self.cfg.bandwidth_mbps * 1e6))
        return compute + network + 2.0 * self.cfg.latency_s

    def round_seconds(self, client_seconds: list[float]) -> float:
        """A synchronous round waits for its slowest client; rounds are scheduled no
        more often than ``round_interval_s``."""
        busy = max(client_seconds, default=0.0) + self.cfg.server_seconds
        return max(busy, self.cfg.round_interval_s)
