"""DP accounting: golden ε from Opacus' own accountant, and composition over rounds."""

from __future__ import annotations

import warnings

import pytest
from opacus.accountants import RDPAccountant

from simulation.fl.privacy import (
    PrivacyLedger,
    calibrate_noise,
    compress,
    epsilon,
    poisson_schedule,
)


def test_poisson_schedule_matches_opacus_dataloader() -> None:
    # DPDataLoader: q = 1/len(loader) = 1/ceil(n/B), and len(loader) steps per epoch.
    assert poisson_schedule(126, 32) == (0.25, 4)
    assert poisson_schedule(100, 10) == (0.1, 10)
    assert poisson_schedule(5, 32) == (1.0, 1)


def test_golden_epsilon_against_opacus_accountant() -> None:
    # σ = 1.0, q = 0.01, 100 steps, δ = 1e-5: stepped one by one in Opacus' accountant.
    acc = RDPAccountant()
    for _ in range(100):
        acc.step(noise_multiplier=1.0, sample_rate=0.01)
    assert acc.get_epsilon(1e-5) == pytest.approx(1.2141452107864754, rel=1e-12)
    assert epsilon(((1.0, 0.01, 100),), 1e-5) == pytest.approx(1.2141452107864754, rel=1e-12)


def test_quickstart_parameters_golden() -> None:
    # 126 examples, batch 32 → q = 0.25, 4 steps/epoch; 2 epochs × 10 rounds at σ = 1.5.
    assert epsilon(((1.5, 0.25, 80),), 1e-5) == pytest.approx(9.377353975633744, rel=1e-12)


def test_composition_over_rounds_is_one_accountant_over_all_steps() -> None:
    ledger = PrivacyLedger(delta=1e-5)
    per_round = (1.5, 0.25, 8)
    eps = [ledger.record("c", per_round) for _ in range(10)]
    assert eps == sorted(eps) and eps[0] < eps[-1]
    one_round = epsilon((per_round,), 1e-5)
    assert eps[0] == pytest.approx(one_round)
    assert eps[-1] == pytest.approx(9.377353975633744, rel=1e-12)
    assert eps[-1] > 2.5 * one_round  # not the last round's ε


def test_heterogeneous_history_composes() -> None:
    ledger = PrivacyLedger(delta=1e-5)
    ledger.record("c", (1.0, 0.1, 10))
    ledger.record("c", (2.0, 0.05, 20))
    acc = RDPAccountant()
    for _ in range(10):
        acc.step(noise_multiplier=1.0, sample_rate=0.1)
    for _ in range(20):
        acc.step(noise_multiplier=2.0, sample_rate=0.05)
    assert ledger.spent("c") == pytest.approx(acc.get_epsilon(1e-5), rel=1e-12)
    assert ledger.would_spend("c", (2.0, 0.05, 20)) > ledger.spent("c")


def test_compress_merges_only_equal_neighbours() -> None:
    h = ((1.0, 0.1, 2), (1.0, 0.1, 3), (2.0, 0.1, 1), (1.0, 0.1, 1))
    assert compress(h) == ((1.0, 0.1, 5), (2.0, 0.1, 1), (1.0, 0.1, 1))


def test_calibrated_noise_reaches_target() -> None:
    sigma = calibrate_noise(5.0, 1e-5, 0.25, 80)
    assert epsilon(((sigma, 0.25, 80),), 1e-5) <= 5.0
    assert epsilon(((sigma * 0.95, 0.25, 80),), 1e-5) > 5.0


def test_calibration_does_not_warn_about_its_own_probes() -> None:
    """Few steps at a modest target: Opacus probes σ = 10, 20, ... where the best
    RDP order is the largest; that is not a warning about the σ returned."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sigma = calibrate_noise(4.0, 1e-5, 16 / 126, 20)
        eps = epsilon(((sigma, 16 / 126, 20),), 1e-5)
    assert 3.9 < eps <= 4.0
