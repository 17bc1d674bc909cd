"""User-level DP-FedAvg (``aggregation.client_dp``): noise, clipping, the fixed
denominator, the client-level ε, and the combinations refused.

Golden values are hand-derived (the clipped mean) or computed here, from the
test's own dp-accounting events and the analytic Gaussian mechanism, never by
the code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import RdpAccountant
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import norm

from simulation.errors import ScenarioError
from simulation.fl.aggregation import create_strategy
from simulation.fl.client_dp import ClientLevelAccountant, DPFedAvg
from simulation.fl.strategies import ClientPrivate, Cohort, PreparesRound, prepare_round
from simulation.scenario.load import load_scenario
from tests.strategies.messages import as_numpy, record, replies

ROOT = Path(__file__).resolve().parents[2]
REPLACE_ONE = dp_accounting.NeighboringRelation.REPLACE_ONE


def _dp(sigma: float, clip: float, seed: int = 0) -> DPFedAvg:
    return DPFedAvg(sigma, clip, 1e-5, rng=np.random.default_rng(seed))


def test_noise_std_is_sigma_c_over_m_with_rejected_clients_as_zero_updates() -> None:
    # σ = 1.3, C = 0.7, m = 4 sampled (two replied, with zero updates; two dropped or
    # rejected): the noise on the average has std σ·C/m = 0.2275, over 10⁴ coordinates.
    dim, glob = 10_000, np.full(10_000, 0.25)
    dp = _dp(1.3, 0.7, seed=11)
    dp.set_cohort(population=20, sampled=4)
    dp.set_global(record(glob))
    arrays, _ = dp.aggregate_train(1, replies(1, {0: np.zeros(dim), 5: np.zeros(dim)}, glob))
    noise = as_numpy(arrays) - glob
    assert abs(noise.std() / 0.2275 - 1.0) < 0.02
    assert abs(noise.mean()) < 4 * 0.2275 / math.sqrt(dim)


def test_a_round_with_no_accepted_reply_is_still_released_with_the_same_noise() -> None:
    glob = np.zeros(10_000)
    dp = _dp(2.0, 1.5, seed=3)
    dp.set_cohort(population=10, sampled=5)
    dp.set_global(record(glob))
    arrays, _ = dp.aggregate_train(1, [])
    assert abs(as_numpy(arrays).std() / (2.0 * 1.5 / 5) - 1.0) < 0.02
    assert dp.last_epsilon is not None and dp.last_epsilon.round > 0


def test_clipped_unweighted_mean_over_the_sampled_hand_computed() -> None:
    # Δ0 = (6, 8), ‖Δ0‖ = 10 → clipped to C = 1: (0.6, 0.8); Δ1 = (0.3, −0.4), norm
    # 0.5, kept. m = 4 sampled (the other two count as zero updates), whatever the
    # example counts: mean = (0.9, 0.4) / 4 = (0.225, 0.1). σ is negligible here.
    glob = np.array([1.0, -2.0])
    dp = _dp(1e-12, 1.0)
    dp.set_cohort(population=8, sampled=4)
    dp.set_global(record(glob))
    arrays, _ = dp.aggregate_train(1, replies(1, {2: [6.0, 8.0], 7: [0.3, -0.4]}, glob))
    np.testing.assert_allclose(as_numpy(arrays), glob + np.array([0.225, 0.1]), atol=1e-9)


def test_full_participation_equals_flowers_clipped_fedavg_with_equal_weights() -> None:
    # When all m sampled reply with equal example counts, Flower's own
    # DifferentialPrivacyServerSideFixedClipping around FedAvg (noise 0) computes the
    # same clipped mean: an independent implementation of steps 1-2.
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

    from simulation.fl.strategies import FLOWER_BASE

    glob = np.array([0.5, -1.0, 2.0])
    updates = {0: [3.0, 0.0, 4.0], 1: [0.1, 0.2, -0.2], 2: [-6.0, 8.0, 0.0]}
    flower = DifferentialPrivacyServerSideFixedClipping(FedAvg(**FLOWER_BASE), 0.0, 1.5, 3)
    flower.current_arrays = record(glob)
    want, _ = flower.aggregate_train(1, replies(1, updates, glob))
    dp = _dp(1e-12, 1.5)
    dp.set_cohort(population=3, sampled=3)
    dp.set_global(record(glob))
    got, _ = dp.aggregate_train(1, replies(1, updates, glob))
    np.testing.assert_allclose(as_numpy(got), as_numpy(want), atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    update=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=8),
    clip=st.floats(1e-3, 10.0),
    sampled=st.sampled_from([1, 3, 7]),
)
def test_one_clients_contribution_is_at_most_c_over_m(
    update: list[float], clip: float, sampled: int
) -> None:
    glob = np.zeros(len(update))
    dp = _dp(1e-15, clip)
    dp.set_cohort(population=100, sampled=sampled)
    dp.set_global(record(glob))
    arrays, _ = dp.aggregate_train(1, replies(1, {0: update}, glob))
    assert np.linalg.norm(as_numpy(arrays)) <= clip / sampled * (1 + 1e-9) + 1e-12


def _reference_epsilons(sigma: float, cohorts: list[tuple[int, int]], delta: float) -> list[float]:
    """dp-accounting's RDP ε after each round of ``m`` of ``N`` without replacement,
    composed one event at a time. Replace-one sensitivity of the clipped sum is 2C and
    the noise std σC: the library's noise multiplier (std / sensitivity) is σ/2."""
    acc = RdpAccountant(neighboring_relation=REPLACE_ONE)
    out = []
    for n, m in cohorts:
        gaussian = dp_accounting.GaussianDpEvent(sigma / 2)
        acc.compose(dp_accounting.SampledWithoutReplacementDpEvent(n, m, gaussian))
        out.append(float(acc.get_epsilon(delta)))
    return out


@pytest.mark.parametrize(
    ("sigma", "cohorts", "delta"),
    [
        (1.1, [(100, 10)] * 3, 1e-5),
        (0.8, [(50, 5), (40, 5), (50, 5)], 1e-6),
    ],
)
def test_epsilon_matches_dp_accounting(
    sigma: float, cohorts: list[tuple[int, int]], delta: float
) -> None:
    acc = ClientLevelAccountant(sigma, delta)
    eps = [acc.record(n, m) for n, m in cohorts]
    want = _reference_epsilons(sigma, cohorts, delta)
    np.testing.assert_allclose([e.cumulative for e in eps], want, rtol=1e-9)
    single = {c: _reference_epsilons(sigma, [c], delta)[0] for c in set(cohorts)}
    np.testing.assert_allclose([e.round for e in eps], [single[c] for c in cohorts], rtol=1e-9)


def test_prepare_is_the_one_hook_the_noise_and_the_epsilon_follow() -> None:
    # prepare() gives the cohort (m = 5 of N = 10: noise std σC/m = 2·1.5/5 = 0.6) and
    # the global model (all 3.0); ε is dp-accounting's for one release at 5 of 10.
    glob = np.full(10_000, 3.0)
    dp = _dp(2.0, 1.5, seed=3)
    assert isinstance(dp, PreparesRound) and isinstance(dp, ClientPrivate)
    assert dp.client_epsilon() == (0.0, 0.0)  # nothing released yet
    prepare_round(dp, {"w": glob}, Cohort(eligible=10, sampled=5))
    arrays, _ = dp.aggregate_train(1, [])
    noise = as_numpy(arrays) - 3.0
    assert abs(noise.std() / 0.6 - 1.0) < 0.02 and abs(noise.mean()) < 4 * 0.6 / 100
    want = _reference_epsilons(2.0, [(10, 5)], 1e-5)[0]
    np.testing.assert_allclose(dp.client_epsilon(), (want, want), rtol=1e-9)
    prepare_round(dp, {"w": glob}, Cohort(eligible=10, sampled=5))  # the next round
    assert dp.client_epsilon() == (0.0, pytest.approx(want, rel=1e-9))  # none released yet


def test_dp_fedavg_refuses_to_prepare_without_the_cohort() -> None:
    with pytest.raises(ValueError, match="cohort"):
        prepare_round(_dp(1.0, 1.0), {"w": np.zeros(2)}, None)


def test_flowers_stateless_rules_need_no_preparation() -> None:
    krum = create_strategy("krum", {"num_malicious_nodes": 1})
    assert not isinstance(krum, PreparesRound) and not isinstance(krum, ClientPrivate)
    prepare_round(krum, {"w": np.zeros(2)}, None)  # a no-op, never an error


def _exact_gaussian_epsilon(mu: float, delta: float) -> float:
    """The tight ε of a Gaussian mechanism with sensitivity/std ``mu`` (Balle & Wang
    2018, Theorem 8): δ(ε) = Φ(μ/2 − ε/μ) − e^ε Φ(−μ/2 − ε/μ)."""

    def gap(eps: float) -> float:
        return float(norm.cdf(mu / 2 - eps / mu) - math.exp(eps) * norm.cdf(-mu / 2 - eps / mu))

    return float(brentq(lambda e: gap(e) - delta, 0.0, 100.0))


def test_full_participation_epsilon_is_bracketed_by_the_replace_one_gaussian() -> None:
    # m = N: no amplification; T rounds of noise σC on a sum with replace-one
    # sensitivity 2C compose to a Gaussian mechanism with μ = 2√T/σ. The tight ε
    # is a lower bound of any valid accountant's, and the classical RDP conversion
    # min_α T·2α/σ² + ln(1/δ)/(α−1) an upper bound of dp-accounting's.
    sigma, rounds, delta = 4.0, 3, 1e-5
    acc = ClientLevelAccountant(sigma, delta)
    for _ in range(rounds):
        got = acc.record(10, 10).cumulative
    lower = _exact_gaussian_epsilon(2 * math.sqrt(rounds) / sigma, delta)
    upper = min(
        rounds * 2 * a / sigma**2 + math.log(1 / delta) / (a - 1) for a in np.arange(1.1, 200, 0.1)
    )
    assert lower < got <= upper * (1 + 1e-9)
    # With the add/remove sensitivity C (noise multiplier σ) it would under-report:
    assert _exact_gaussian_epsilon(math.sqrt(rounds) / sigma, delta) < lower


def _scenario(*extra: str) -> list[str]:
    return [
        "rounds=3",
        "training.epochs=1",
        "clients.count=8",
        "clients.fraction=0.5",
        "aggregation.client_dp.mode=dp-fedavg",
        "aggregation.client_dp.noise_multiplier=1.2",
        "aggregation.client_dp.clipping_norm=2.0",
        *extra,
    ]


@pytest.mark.parametrize(
    ("strategy", "field", "why"),
    [
        ("krum", "aggregation.strategy", "Krum selects one client's update"),
        ("fltrust", "aggregation.strategy", "undoing the clipping"),
        ("foolsgold", "aggregation.strategy", "FoolsGold"),
        ("bulyan", "aggregation.strategy", "Bulyan"),
        ("fedmedian", "aggregation.strategy", "median"),
    ],
)
def test_client_dp_around_a_rule_without_bounded_sensitivity_is_a_scenario_error(
    strategy: str, field: str, why: str
) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(
            ROOT / "scenarios" / "baseline.yaml", _scenario(f"aggregation.strategy={strategy}")
        )
    [problem] = [p for p in err.value.problems if p.field == field]
    assert "aggregation.client_dp cannot wrap" in problem.reason and why in problem.reason
    with pytest.raises(ValueError, match="cannot wrap"):
        create_strategy(
            strategy, {}, {"mode": "dp-fedavg", "noise_multiplier": 1.0, "clipping_norm": 1.0}
        )


def test_flowers_unaccounted_wrappers_and_a_large_delta_are_refused() -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(
            ROOT / "scenarios" / "baseline.yaml",
            _scenario("aggregation.client_dp.mode=server-fixed", "aggregation.client_dp.delta=0.2"),
        )
    fields = {p.field: p.reason for p in err.value.problems}
    assert "weights by example count" in fields["aggregation.client_dp.mode"]
    assert "1/clients.count" in fields["aggregation.client_dp.delta"]


def test_reduced_run_records_client_level_epsilon(tmp_path: Path) -> None:
    import json

    import pandas as pd

    from simulation import names
    from simulation.engine.runner import run_scenario

    scenario = load_scenario(ROOT / "scenarios" / "baseline.yaml", _scenario())
    run_scenario(scenario, tmp_path, engine="inprocess")
    rounds = pd.read_parquet(tmp_path / "rounds.parquet")
    assert rounds["sampled"].tolist()[1:] == [4, 4, 4]
    want = _reference_epsilons(1.2, [(8, 4)] * 3, 1e-5)
    np.testing.assert_allclose(rounds[names.CLIENT_EPSILON_ROUND].iloc[1:], want[0], rtol=1e-9)
    np.testing.assert_allclose(rounds[names.CLIENT_EPSILON].iloc[1:], want, rtol=1e-9)
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    rows = metrics[(metrics.client == names.GLOBAL) & (metrics.metric == names.CLIENT_EPSILON)]
    assert rows["round"].tolist() == [1, 2, 3]
    manifest = json.loads((tmp_path / "manifest.json").read_text())["client_dp"]
    assert manifest[names.CLIENT_EPSILON] == pytest.approx(want[-1], rel=1e-9)
    assert manifest["rounds_released"] == 3 and manifest["noise_multiplier"] == 1.2
