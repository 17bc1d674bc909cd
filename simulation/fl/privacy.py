"""Sample-level DP accounting that composes across rounds.

A client's privacy loss after its k-th round is one RDP accountant over *all*
its DP-SGD steps so far, not the last round's ε. The server keeps each
client's step history ``[(σ, q, steps), ...]`` and asks Opacus' RDP accountant
for ε. Computing ε costs tens of milliseconds, and in a round most clients
share the same history (same data size, same noise), so results are memoised
on the history itself.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field

from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from marketplace.privacy_audit import RDP_ORDERS, pld_epsilon

ALPHAS = list(RDP_ORDERS)
"""RDP orders for Opacus: the integers 2..63, which the ledger names and the audit
re-derives with (Opacus' own default adds fractional orders, where dp-accounting
computes a looser bound; see marketplace.privacy_audit)."""

Step = tuple[float, float, int]  # (noise multiplier σ, sample rate q, number of steps)


def poisson_schedule(num_examples: int, batch_size: int) -> tuple[float, int]:
    """Sample rate and steps per epoch exactly as Opacus' ``DPDataLoader`` derives them.

    ``DPDataLoader.from_data_loader`` sets q = 1 / len(loader) = 1 / ⌈n / B⌉ (the
    plain loader :func:`~simulation.fl.training.local_train` builds, ``drop_last``
    off), and its ``UniformWithReplacementSampler`` then takes ``int(1 / q)`` steps
    per epoch, which is one fewer than ⌈n / B⌉ when 1 / (1 / k) rounds below k in
    floating point (k = 93, 99, 105, ...). ``num_examples`` is the rows the client
    actually trains on (after its behaviour's ``data_fraction``). Training and the
    server's budget check and noise calibration all call this one function.
    """
    if num_examples < 1:
        raise ValueError("a client needs at least one example")
    q = 1.0 / math.ceil(num_examples / batch_size)
    return q, int(1 / q)


def compress(history: tuple[Step, ...]) -> tuple[Step, ...]:
    """Merge adjacent entries with the same (σ, q): RDP composes additively in steps."""
    out: list[Step] = []
    for sigma, q, n in history:
        if out and out[-1][0] == sigma and out[-1][1] == q:
            out[-1] = (sigma, q, out[-1][2] + n)
        else:
            out.append((sigma, q, n))
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def epsilon(history: tuple[Step, ...], delta: float, accountant: str = "rdp") -> float:
    """ε(δ) of the composition of every step in ``history``: Opacus' RDP accountant
    at :data:`ALPHAS`, or dp-accounting's PLD accountant (Opacus has none)."""
    if not history:
        return 0.0
    if accountant == "pld":
        return pld_epsilon(history, delta)
    acc = RDPAccountant()
    acc.history = list(compress(history))
    with warnings.catch_warnings():
        # The orders start at 2 on purpose (docs/privacy.md): below 2, dp-accounting's
        # bound is looser than Opacus', so the audit could not re-derive ε to 1e-6.
        # When the best order would be below 2 (a large ε from few steps) Opacus says
        # so; the ε returned is then slightly conservative, never under-reported.
        warnings.filterwarnings("ignore", message="Optimal order is the smallest alpha")
        return float(acc.get_epsilon(delta=delta, alphas=ALPHAS))


@functools.lru_cache(maxsize=1024)
def calibrate_noise(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The σ that makes ``steps`` steps at rate ``sample_rate`` cost ``target_epsilon``."""
    with warnings.catch_warnings():
        # Opacus' search probes σ far above the answer, where ε is tiny and the
        # best RDP order is the largest one; its warning about that probe says
        # nothing about the σ returned (whose ε is computed without it).
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        # And below the answer, where ε is large and the best order would be under
        # 2 (the orders start at 2 on purpose: see ``epsilon``).
        warnings.filterwarnings("ignore", message="Optimal order is the smallest alpha")
        sigma = get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant="rdp",
            alphas=ALPHAS,
        )
    return float(sigma)


@dataclass
class PrivacyLedger:
    """Per-client DP-SGD step histories and the ε they imply."""

    delta: float
    accountant: str = "rdp"
    histories: dict[str, tuple[Step, ...]] = field(default_factory=dict)

    def spent(self, client: str) -> float:
        """Cumulative ε of ``client`` so far."""
        return epsilon(compress(self.histories.get(client, ())), self.delta, self.accountant)

    def would_spend(self, client: str, step: Step) -> float:
        """Cumulative ε of ``client`` if it trained one more round of ``step``."""
        history = compress((*self.histories.get(client, ()), step))
        return epsilon(history, self.delta, self.accountant)

    def record(self, client: str, step: Step) -> float:
        """Add a round's steps to ``client``'s history; return its new cumulative ε."""
        self.histories[client] = compress((*self.histories.get(client, ()), step))
        return self.spent(client)
