"""Re-derive every identity's ε from the mechanism parameters its ledger entries record.

A ``contribution`` (or ``contribution_rejected``: the client trained on its data
either way) entry of a DP run carries a ``privacy`` record: the Poisson-sampled
Gaussian mechanism's noise multiplier σ, sample rate q, the DP-SGD steps of
that round, δ, the accountant and its parameters. The audit composes every
step an identity took, in ledger order, with Google's ``dp-accounting`` — an
accountant independent of Opacus, which the runner uses — and fails on the
first entry whose recorded cumulative ε differs by more than
:data:`REL_TOLERANCE` relative.

RDP results depend on the orders α the accountant optimises over, so they are
named on the ledger (``rdp_orders``) and defined here, not left to library
defaults: :data:`RDP_ORDER_SETS`. Only integer orders are used: there both
libraries evaluate the exact binomial expansion and agree to ~1e-12, whereas at
fractional orders dp-accounting 0.6.0 sums |binom(α, i)| (a valid but looser
bound than Opacus', up to 2 % apart in log A_α), which would make an honest
Opacus ε fail a 1e-6 audit. RDP composes additively in steps, so one
step's RDP curve is computed once per (σ, q) and scaled (the audit stays linear
in entries). PLD composition is not linear that way; its results are cached per
(compressed) history instead.

Pure Python plus ``dp-accounting`` (no torch, no Opacus).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import dp_accounting
import numpy as np
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant, compute_epsilon

from marketplace.entries import Entry
from marketplace.state import MarketState

__all__ = [
    "ACCOUNTANTS",
    "PRIVACY_KINDS",
    "RDP_ORDERS",
    "RDP_ORDERS_NAME",
    "RDP_ORDER_SETS",
    "REL_TOLERANCE",
    "Mechanism",
    "PrivacyAudit",
    "epsilon_of",
    "identity_histories",
    "pld_epsilon",
    "rdp_epsilon",
]

REL_TOLERANCE = 1e-6
"""Largest relative difference between a recorded and a re-derived ε."""

RDP_ORDERS: tuple[float, ...] = tuple(float(a) for a in range(2, 64))
"""The RDP orders the runner (Opacus) and the audit (dp-accounting) both use:
α = 2, 3, …, 63, the ledger's ``"int-2-63"``."""

RDP_ORDERS_NAME = "int-2-63"

RDP_ORDER_SETS: Mapping[str, tuple[float, ...]] = {RDP_ORDERS_NAME: RDP_ORDERS}
"""The order sets a ledger may name in ``rdp_orders``."""

ACCOUNTANTS = ("rdp", "pld")

PLD_DISCRETIZATION = 1e-4
"""dp-accounting's ``value_discretization_interval`` for the PLD accountant: its
ε is an upper bound that overshoots the exact PLD ε by at most about this much
per composition (the library's pessimistic discretisation)."""

PRIVACY_KINDS = ("contribution", "contribution_rejected")
"""Entry kinds that carry a ``privacy`` record."""

log = logging.getLogger("fedmarket.ledger")


@dataclass(frozen=True, slots=True)
class Mechanism:
    """One entry's privacy record: ``steps`` DP-SGD steps of the Poisson-sampled
    Gaussian mechanism (σ, q), accounted at δ by ``accountant``."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    accountant: Literal["rdp", "pld"]
    rdp_orders: str = RDP_ORDERS_NAME
    pld_discretization: float = PLD_DISCRETIZATION

    @classmethod
    def from_json(cls, data: object) -> Mechanism:
        """Parse an entry's ``privacy`` record; ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError("privacy record is not an object")

        def number(key: str) -> float:
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"privacy record field {key!r} is not a number")
            if not math.isfinite(value):
                raise ValueError(f"privacy record field {key!r} is not finite")
            return float(value)

        if data.get("mechanism") != "poisson_gaussian":
            raise ValueError(f"unknown privacy mechanism {data.get('mechanism')!r}")
        accountant = data.get("accountant")
        if accountant not in ACCOUNTANTS:
            raise ValueError(f"unknown accountant {accountant!r}")
        orders = data.get("rdp_orders", RDP_ORDERS_NAME) if accountant == "rdp" else RDP_ORDERS_NAME
        if orders not in RDP_ORDER_SETS:
            raise ValueError(f"unknown RDP order set {orders!r}")
        steps = data.get("steps")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError("privacy record field 'steps' is not a step count")
        sigma, q, delta = number("noise_multiplier"), number("sample_rate"), number("delta")
        if sigma <= 0 or not 0 <= q <= 1 or not 0 < delta < 1:
            raise ValueError("privacy record has σ <= 0, q outside [0, 1] or δ outside (0, 1)")
        return cls(
            noise_multiplier=sigma,
            sample_rate=q,
            steps=steps,
            delta=delta,
            accountant=accountant,
            rdp_orders=str(orders),
            pld_discretization=(
                number("pld_discretization") if accountant == "pld" else PLD_DISCRETIZATION
            ),
        )


Step = tuple[float, float, int]  # (σ, q, steps)


def _event(sigma: float, q: float, steps: int) -> dp_accounting.DpEvent:
    step = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    return dp_accounting.SelfComposedDpEvent(step, steps)


@functools.lru_cache(maxsize=4096)
def _rdp_one_step(sigma: float, q: float, orders: str) -> np.ndarray:
    """RDP curve of one Poisson-sampled Gaussian step at the named orders."""
    acc = RdpAccountant(orders=list(RDP_ORDER_SETS[orders]))
    acc.compose(_event(sigma, q, 1))
    return np.asarray(acc.rdp, dtype=float)


def rdp_epsilon(history: tuple[Step, ...], delta: float, orders: str = RDP_ORDERS_NAME) -> float:
    """ε(δ) of ``history`` with dp-accounting's RDP accountant at the named orders."""
    if not any(n for _, _, n in history):
        return 0.0
    total = sum(n * _rdp_one_step(s, q, orders) for s, q, n in history if n)
    return _rdp_to_epsilon(np.asarray(total), delta, orders)


@functools.lru_cache(maxsize=65536)
def _rdp_cached(history: tuple[Step, ...], delta: float, orders: str) -> float:
    return rdp_epsilon(history, delta, orders)


def _rdp_to_epsilon(total: np.ndarray, delta: float, orders: str) -> float:
    # dp-accounting's conversion loops over the orders in Python: handed lists of
    # floats rather than arrays it does the same IEEE double arithmetic (the same ε,
    # bit for bit) ~3x faster than on numpy scalars, and the audit calls it for
    # every new (history, δ).
    eps, _ = compute_epsilon(RDP_ORDER_SETS[orders], total.tolist(), delta)
    return float(eps)


def _compress(history: tuple[Step, ...]) -> tuple[Step, ...]:
    out: list[Step] = []
    for s, q, n in history:
        if n == 0:
            continue
        if out and out[-1][:2] == (s, q):
            out[-1] = (s, q, out[-1][2] + n)
        else:
            out.append((s, q, n))
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def _pld_cached(history: tuple[Step, ...], delta: float, interval: float) -> float:
    acc = PLDAccountant(value_discretization_interval=interval)
    for s, q, n in history:
        acc.compose(_event(s, q, n))
    return float(acc.get_epsilon(delta))


def pld_epsilon(
    history: tuple[Step, ...], delta: float, interval: float = PLD_DISCRETIZATION
) -> float:
    """ε(δ) of ``history`` with dp-accounting's PLD accountant (tighter than RDP)."""
    compressed = _compress(history)
    return _pld_cached(compressed, delta, interval) if compressed else 0.0


def epsilon_of(history: tuple[Step, ...], mech: Mechanism) -> float:
    """ε(δ) of ``history`` with the accountant ``mech`` names."""
    if mech.accountant == "pld":
        return pld_epsilon(history, mech.delta, mech.pld_discretization)
    return rdp_epsilon(_compress(history), mech.delta, mech.rdp_orders)


def _account_of(entry: Entry) -> str:
    """The identity whose privacy an entry records (rejections are platform-signed)."""
    if entry.kind == "contribution_rejected":
        client = entry.data.get("client")
        if not isinstance(client, str):
            raise ValueError("rejected contribution names no client")
        return client
    return entry.sender


def identity_histories(entries: Iterable[Entry]) -> dict[str, tuple[Step, ...]]:
    """Every identity's recorded (σ, q, steps), in ledger order (DP entries only)."""
    out: dict[str, list[Step]] = {}
    for entry in entries:
        if entry.kind in PRIVACY_KINDS and entry.data.get("privacy") is not None:
            mech = Mechanism.from_json(entry.data["privacy"])
            step = (mech.noise_multiplier, mech.sample_rate, mech.steps)
            out.setdefault(_account_of(entry), []).append(step)
    return {k: tuple(v) for k, v in out.items()}


@dataclass
class PrivacyAudit:
    """The audit hook (:data:`marketplace.audit.EntryCheck`) for contribution entries.

    Keeps each identity's steps and fails, naming the reason, on the first entry
    whose recorded cumulative ε is not what the recorded mechanisms give, or
    whose δ/accountant differs from that identity's earlier entries. An entry
    without a ``privacy`` record must record no ε (a non-DP run), so an ε cannot
    be published without the parameters that back it.
    """

    histories: dict[str, list[Step]] = field(default_factory=dict)
    settings: dict[str, tuple[float, str, str, float]] = field(default_factory=dict)
    compressed: dict[str, tuple[Step, ...]] = field(default_factory=dict)
    """Each identity's history with equal neighbours merged: identities that trained
    alike share it, so their ε is computed once (RDP itself is one cached curve per
    (σ, q), scaled by steps)."""
    checked: int = 0
    max_rel_error: float = 0.0
    _parsed: dict[tuple[tuple[str, type, object], ...], Mechanism] = field(
        default_factory=dict, repr=False
    )
    """Privacy records already parsed, by their typed items (a run repeats a handful
    of them: the key keeps ``True`` apart from ``1`` and ``1.0``)."""

    def __call__(self, entry: Entry, state: MarketState) -> None:
        recorded = entry.data.get("epsilon")
        raw = entry.data.get("privacy")
        if raw is None:
            if recorded is not None:
                raise ValueError("records an ε but no mechanism parameters to derive it from")
            return
        mech = self._mechanism(raw)
        account = _account_of(entry)
        setting = (mech.delta, mech.accountant, mech.rdp_orders, mech.pld_discretization)
        if self.settings.setdefault(account, setting) != setting:
            raise ValueError(f"{account}: δ or accountant differs from its earlier entries")
        history = self.histories.setdefault(account, [])
        history.append((mech.noise_multiplier, mech.sample_rate, mech.steps))
        if isinstance(recorded, bool) or not isinstance(recorded, int | float):
            raise ValueError("records mechanism parameters but no cumulative ε")
        derived = self._derive(account, history, mech)
        rel = abs(recorded - derived) / max(abs(derived), 1e-300) if derived else abs(recorded)
        if not rel <= REL_TOLERANCE:
            raise ValueError(
                f"{account}: recorded ε {recorded!r} but dp-accounting ({mech.accountant}) "
                f"derives {derived!r} from its {len(history)} recorded rounds "
                f"(relative difference {rel:.3g} > {REL_TOLERANCE:g})"
            )
        self.checked += 1
        self.max_rel_error = max(self.max_rel_error, rel)

    def _mechanism(self, raw: object) -> Mechanism:
        """:meth:`Mechanism.from_json`, once per distinct privacy record."""
        if not isinstance(raw, dict):
            return Mechanism.from_json(raw)
        key = tuple([(k, type(v), v) for k, v in raw.items()])
        try:
            mech = self._parsed.get(key)
        except TypeError:  # an unhashable value: malformed, from_json says why
            return Mechanism.from_json(raw)
        if mech is None:
            mech = self._parsed[key] = Mechanism.from_json(raw)
        return mech

    def _derive(self, account: str, history: list[Step], mech: Mechanism) -> float:
        if mech.accountant == "pld":
            return epsilon_of(tuple(history), mech)
        compressed = _compress((*self.compressed.get(account, ()), history[-1]))
        self.compressed[account] = compressed
        return _rdp_cached(compressed, mech.delta, mech.rdp_orders)

    def checks(self) -> dict[str, list[PrivacyAudit]]:
        """The ``checks=`` mapping for :func:`marketplace.audit.audit_ledger`."""
        return {kind: [self] for kind in PRIVACY_KINDS}
