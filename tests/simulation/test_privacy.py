"""DP accounting: Opacus' ε against golden values from dp-accounting (an independent
library, tests/fixtures/references/dp_accounting.json), and composition over rounds."""

from __future__ import annotations

import warnings

import pytest
from opacus.accountants import RDPAccountant

from simulation.fl.privacy import (
    ALPHAS,
    PrivacyLedger,
    calibrate_noise,
    compress,
    epsilon,
    poisson_schedule,
)
from tests.fixtures.references.dp_vectors import VECTORS, golden


def test_poisson_schedule_matches_opacus_dataloader() -> None:
    # DPDataLoader: q = 1/len(loader) = 1/ceil(n/B), and len(loader) steps per epoch.
    assert poisson_schedule(126, 32) == (0.25, 4)
    assert poisson_schedule(100, 10) == (0.1, 10)
    assert poisson_schedule(5, 32) == (1.0, 1)


def test_golden_epsilon_against_dp_accounting() -> None:
    # σ = 1.0, q = 0.01, 100 steps, δ = 1e-5: stepped one by one in Opacus' accountant.
    acc = RDPAccountant()
    for _ in range(100):
        acc.step(noise_multiplier=1.0, sample_rate=0.01)
    want = golden(1.0, 0.01, 100, 1e-5)
    assert acc.get_epsilon(1e-5, alphas=ALPHAS) == pytest.approx(want, rel=1e-9)
    assert epsilon(((1.0, 0.01, 100),), 1e-5) == pytest.approx(want, rel=1e-9)


def test_quickstart_parameters_golden() -> None:
    # 126 examples, batch 32 → q = 0.25, 4 steps/epoch; 2 epochs × 10 rounds at σ = 1.5.
    assert epsilon(((1.5, 0.25, 80),), 1e-5) == pytest.approx(golden(1.5, 0.25, 80, 1e-5), rel=1e-9)


def test_composition_over_rounds_is_one_accountant_over_all_steps() -> None:
    ledger = PrivacyLedger(delta=1e-5)
    per_round = (1.5, 0.25, 8)
    eps = [ledger.record("c", per_round) for _ in range(10)]
    assert eps == sorted(eps) and eps[0] < eps[-1]
    one_round = epsilon((per_round,), 1e-5)
    assert eps[0] == pytest.approx(one_round)
    assert eps[-1] == pytest.approx(golden(1.5, 0.25, 80, 1e-5), rel=1e-9)
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
    assert ledger.spent("c") == pytest.approx(acc.get_epsilon(1e-5, alphas=ALPHAS), rel=1e-12)
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
        sigma = calibrate_noise(3.0, 1e-5, 16 / 126, 20)
        eps = epsilon(((sigma, 16 / 126, 20),), 1e-5)
    assert 2.95 < eps <= 3.0


# The grid's corners (σ = 4 with one step, σ = 0.9 with q = 1) have their best order
# at an end of 2..63: Opacus says so; the ε is still the bound over those orders.
@pytest.mark.filterwarnings("ignore:Optimal order is the (smallest|largest) alpha")
def test_opacus_epsilon_matches_dp_accounting_rdp_over_the_grid() -> None:
    """155 points (σ 0.9..4, q 0.001..1, 1..1000 steps, δ 1e-5/1e-6): the runner's ε
    (Opacus, orders 2..63) equals dp-accounting's RDP to 1e-6 (in fact ~1e-12)."""
    worst = 0.0
    for r in VECTORS["rdp"]:
        got = epsilon(((r["sigma"], r["q"], r["steps"]),), r["delta"])
        worst = max(worst, abs(got - r["epsilon"]) / r["epsilon"])
    assert len(VECTORS["rdp"]) == 155
    assert worst <= 1e-6


@pytest.mark.parametrize("row", VECTORS["pld"][:1], ids=lambda r: f"s{r['sigma']}-q{r['q']}")
def test_pld_accountant_within_its_discretisation_and_below_rdp(row: dict[str, float]) -> None:
    """The runner's PLD ε (dp-accounting, interval 1e-4) is an upper bound on the PLD
    ε at a 10x finer interval, within about one interval of it, and tighter than RDP."""
    history = ((row["sigma"], row["q"], int(row["steps"])),)
    got = epsilon(history, row["delta"], "pld")
    assert got == pytest.approx(row["epsilon"], rel=1e-12)
    assert row["epsilon_fine"] <= got <= row["epsilon_fine"] + 1e-4 * 1.5
    assert got < epsilon(history, row["delta"], "rdp")
    ledger = PrivacyLedger(row["delta"], "pld")
    ledger.record("c", history[0])
    assert ledger.spent("c") == got


def test_full_batch_gaussian_matches_the_hand_derivation() -> None:
    """q = 1: RDP(α) = steps·α/(2σ²); ε = min_α RDP + ln((α−1)/α) − (ln δ + ln α)/(α−1).
    σ = 4, 100 steps, δ = 1e-5: α = 3, ε = 9.375 − 0.405465 + 5.207156 (docs/privacy.md)."""
    assert epsilon(((4.0, 1.0, 100),), 1e-5) == pytest.approx(14.176691480042896, rel=1e-12)
