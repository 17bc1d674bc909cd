"""Yuma Consensus, as Bittensor runs it, one epoch at a time.

Bittensor's subnets pay miners ("servers") and validators by the weights the
validators set on the servers, each validator counting by its stake
(opentensor/subtensor ``docs/consensus.md``). One epoch of Yuma, for a weight
matrix ``W`` (validators × servers) and stakes ``S``:

1. *weights*: each validator's row is normalised to sum to 1 (``W / (ΣW + 1e-6)``);
   stakes are normalised to sum to 1;
2. *consensus* ``C_j``: the stake-weighted κ-quantile of column ``j`` from the top,
   the largest weight that validators holding at least κ of the stake give at
   or above (:func:`stake_quantile`); ``C`` is then normalised and quantised
   to 16 bits as on chain (``⌊C/ΣC · 65535⌋ / 65535``);
3. *clipping*: ``W̄ = min(W, C)``; *rank* ``R = Sᵀ W̄``; *incentive* ``I = R / ΣR``
   (the servers' share of the emission); *trust* ``T = R / P`` with prerank
   ``P = Sᵀ W``, and validator trust ``T_v = ΣW̄ / ΣW`` per row;
4. *bonds* and *dividends* (the validators' share), by version, named as in
   bactensor/yuma-simulation (``YumaSimulationNames``):

   * ``"Yuma 1"`` (subtensor's Rust Yuma as that simulator models it): bond
     weights ``W_b = (1 − β) W + β W̄`` (β = ``bond_penalty``), bonds
     ``B = S W_b`` normalised per server (``+1e-6``), no moving average
     (α = 1), the EMA bond normalised again; dividends ``D = (B_ema · I)`` per
     validator;
   * ``"Yuma 2 (subtensor)"``: as Yuma 1, bonds normalised without the ``1e-6``
     and smoothed by an exponential moving average ``B_ema = α B + (1 − α) B_old``
     with ``α = 1 − bond_moving_avg``;
   * ``"Yuma 3 (Rhef+relative bonds)"``: each validator–server bond grows by at
     most ``α W`` per epoch towards a cap of 1 after decaying by ``(1 − α)``
     (stake no longer enters bonds); dividends ``D = S · (B_norm · I)``.

   ``dividends_normalized = D / (ΣD + 1e-6)``.

Every output is checked against yuma-simulation's own cases (Case 1 to 18, all
three versions, 40 epochs) by ``tests/marketplace/test_reference_yuma.py``. Zero
total stake has no consensus: it raises ``ValueError`` instead of falling back
to anything. Liquid alpha and the Yuma 2B/2C variants are not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "YUMA_VERSIONS",
    "YumaEpoch",
    "YumaParams",
    "YumaVersion",
    "stake_quantile",
    "yuma_consensus_weights",
    "yuma_epoch",
]

Array = NDArray[np.float64]
YumaVersion = Literal["Yuma 1", "Yuma 2 (subtensor)", "Yuma 3 (Rhef+relative bonds)"]
YUMA_VERSIONS: tuple[YumaVersion, ...] = (
    "Yuma 1",
    "Yuma 2 (subtensor)",
    "Yuma 3 (Rhef+relative bonds)",
)

_EPS = 1e-6  # the simulator's (and subtensor's) guard in normalisations
_U16 = 65_535


@dataclass(frozen=True)
class YumaParams:
    """Yuma's hyperparameters (defaults: yuma-simulation's ``SimulationHyperparameters``)."""

    kappa: float = 0.5
    """Stake fraction whose agreement sets the consensus (subtensor's κ)."""
    bond_penalty: float = 1.0
    """β: how much of the weight above consensus is kept out of bonds (1: all)."""
    bond_moving_avg: float = 0.1
    """Yuma 2/3: ``α = 1 − bond_moving_avg`` (weight of this epoch's bonds)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.kappa <= 1.0:
            raise ValueError(f"kappa must be in (0, 1], got {self.kappa}")
        if not 0.0 <= self.bond_penalty <= 1.0:
            raise ValueError(f"bond_penalty must be in [0, 1], got {self.bond_penalty}")
        if not 0.0 <= self.bond_moving_avg <= 1.0:
            raise ValueError(f"bond_moving_avg must be in [0, 1], got {self.bond_moving_avg}")


@dataclass(frozen=True)
class YumaEpoch:
    """Everything one epoch computes (names follow yuma-simulation's result keys)."""

    weight: Array
    stake: Array
    server_prerank: Array
    server_consensus_weight: Array
    consensus_clipped_weight: Array
    server_rank: Array
    server_incentive: Array
    server_trust: Array
    validator_trust: Array
    validator_bond: Array
    """This epoch's bonds, before any moving average."""
    validator_ema_bond: Array
    """The bond state the next epoch starts from."""
    validator_reward: Array
    validator_reward_normalized: Array


def stake_quantile(values: Array, stakes: Array, kappa: float) -> float:
    """The largest ``c`` in ``values`` such that entries ``>= c`` hold ``>= kappa`` of the stake.

    ``stakes`` must sum to a positive number; they are normalised here. This is
    Yuma's per-server consensus (``cumsum(stake sorted by weight, descending) >= κ``).
    """
    total = float(np.sum(stakes))
    if not total > 0.0:
        raise ValueError("Yuma consensus needs positive total stake; every voter has stake 0")
    order = np.argsort(-values, kind="stable")
    reached = np.cumsum(stakes[order] / total) >= kappa
    first = int(np.argmax(reached))  # 0 when never reached (rounding): the top value
    return float(values[order][first])


def yuma_consensus_weights(weights: Array, stakes: Array, kappa: float) -> Array:
    """``C_j`` = :func:`stake_quantile` of each column of ``weights`` (validators × servers)."""
    return np.array(
        [stake_quantile(weights[:, j], stakes, kappa) for j in range(weights.shape[1])],
        dtype=np.float64,
    )


def _quantise(consensus: Array) -> Array:
    total = float(consensus.sum())
    if total <= 0.0:
        return np.zeros_like(consensus)
    return np.trunc(consensus / total * _U16) / _U16


def _div(a: Array, b: Array) -> Array:
    """``a / b`` with 0 where the quotient is undefined (torch's ``nan_to_num(0)``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a / b
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _bonds(
    version: YumaVersion,
    params: YumaParams,
    w: Array,
    clipped: Array,
    s: Array,
    bonds_prev: Array | None,
) -> tuple[Array, Array]:
    """(this epoch's bonds, the bond state carried to the next epoch)."""
    alpha = 1.0 - params.bond_moving_avg
    if version == "Yuma 3 (Rhef+relative bonds)":
        old = np.zeros_like(w) if bonds_prev is None else bonds_prev
        decayed = old * (1.0 - alpha)
        purchase = np.minimum(alpha * w, np.clip(1.0 - decayed, 0.0, None))
        bonds = np.minimum(decayed + purchase, 1.0)
        return bonds, bonds
    w_b = (1.0 - params.bond_penalty) * w + params.bond_penalty * clipped
    raw = s[:, None] * w_b
    if version == "Yuma 1":
        bonds = _div(raw, raw.sum(axis=0) + _EPS)
        ema = bonds.copy() if bonds_prev is None else bonds  # α = 1: no memory
        return bonds, _div(ema, ema.sum(axis=0) + _EPS)
    bonds = _div(raw, raw.sum(axis=0))
    ema = bonds if bonds_prev is None else alpha * bonds + (1.0 - alpha) * bonds_prev
    return bonds, ema


def yuma_epoch(
    weights: Array,
    stakes: Array,
    *,
    version: YumaVersion = "Yuma 2 (subtensor)",
    params: YumaParams | None = None,
    bonds_prev: Array | None = None,
) -> YumaEpoch:
    """One Yuma epoch for ``weights`` (validators × servers, ≥ 0) and ``stakes`` (≥ 0).

    ``bonds_prev`` is the previous epoch's ``validator_ema_bond`` (``None`` in
    the first epoch). Raises ``ValueError`` for zero total stake, negative
    inputs, mismatched shapes or an unknown version.
    """
    if version not in YUMA_VERSIONS:
        raise ValueError(f"unknown Yuma version {version!r}; valid: {', '.join(YUMA_VERSIONS)}")
    p = params if params is not None else YumaParams()
    w_in = np.asarray(weights, dtype=np.float64)
    s_in = np.asarray(stakes, dtype=np.float64)
    if w_in.ndim != 2 or s_in.shape != (w_in.shape[0],):
        raise ValueError(f"weights {w_in.shape} and stakes {s_in.shape} do not match")
    if (w_in < 0).any() or (s_in < 0).any():
        raise ValueError("Yuma weights and stakes must be non-negative")
    if not float(s_in.sum()) > 0.0:
        raise ValueError("Yuma needs positive total stake; every validator has stake 0")
    w = w_in / (w_in.sum(axis=1, keepdims=True) + _EPS)
    s = s_in / s_in.sum()
    prerank = s @ w
    consensus = _quantise(yuma_consensus_weights(w, s, p.kappa))
    clipped = np.minimum(w, consensus)
    rank = s @ clipped
    incentive = _div(rank, np.full_like(rank, rank.sum()))
    with np.errstate(divide="ignore", invalid="ignore"):
        validator_trust = clipped.sum(axis=1) / w.sum(axis=1)
    bonds, ema = _bonds(version, p, w, clipped, s, bonds_prev)
    if version == "Yuma 3 (Rhef+relative bonds)":
        normalised = bonds / (bonds.sum(axis=0, keepdims=True) + _EPS)
        reward = s * (normalised * incentive).sum(axis=1)
    else:
        reward = (ema * incentive).sum(axis=1)
    return YumaEpoch(
        weight=w,
        stake=s,
        server_prerank=prerank,
        server_consensus_weight=consensus,
        consensus_clipped_weight=clipped,
        server_rank=rank,
        server_incentive=incentive,
        server_trust=_div(rank, prerank),
        validator_trust=validator_trust,
        validator_bond=bonds,
        validator_ema_bond=ema,
        validator_reward=reward,
        validator_reward_normalized=reward / (reward.sum() + _EPS),
    )
