"""Study statistics against hand-derived numbers and scipy run in the test itself.

The bootstrap is checked against the exact bootstrap distribution (every one of
the n^n resamples enumerated here), the t interval against its formula, the
Wilcoxon p against the sign-flip enumeration it must equal, and the paired t
against ``scipy.stats.ttest_rel``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata, t, ttest_rel

from simulation.study.compare import summarize
from simulation.study.stats import estimate, paired_difference


def _exact_bootstrap_percentiles(x: list[float]) -> tuple[float, float]:
    """2.5 % and 97.5 % quantiles of the mean over all n^n equally likely resamples."""
    means = np.array([np.mean(c) for c in itertools.product(x, repeat=len(x))])
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def test_bootstrap_matches_the_exact_bootstrap_distribution() -> None:
    x = [0.61, 0.64, 0.66, 0.70, 0.79]
    lo, hi = _exact_bootstrap_percentiles(x)  # 3125 resamples, enumerated
    e = estimate(x, "test_accuracy", key=("d",))
    assert e.n == 5 and e.mean == pytest.approx(0.68)
    # 9999 Monte Carlo resamples: within one step of the resample-mean grid (0.01 / 5 ...)
    assert e.lo == pytest.approx(lo, abs=0.006)
    assert e.hi == pytest.approx(hi, abs=0.006)
    assert min(x) <= e.lo < e.mean < e.hi <= max(x)
    again = estimate(x, "test_accuracy", key=("d",))
    assert (again.lo, again.hi) == (e.lo, e.hi)  # seeded: identical on every rebuild


def test_t_interval_formula_and_clipping() -> None:
    x = [0.2, 0.9, 1.0, 1.0, 1.0]
    mean, s = float(np.mean(x)), float(np.std(x, ddof=1))
    half = t.ppf(0.975, 4) * s / math.sqrt(5)  # 0.82 ± 0.43: spills above 1
    assert mean + half > 1.0
    e = estimate(x, "test_accuracy", method="t")
    assert e.lo == pytest.approx(mean - half)
    assert e.hi == 1.0  # clipped to accuracy's range
    eps = estimate([0.0, 0.0, 0.0, 0.0, 5.0], "epsilon_max", method="t")
    assert eps.lo == 0.0  # ε >= 0
    unbounded = estimate([-3.0, -1.0, 0.0, 1.0, 4.0], "honest_profit", method="t")
    assert unbounded.lo == pytest.approx(
        0.2 - t.ppf(0.975, 4) * np.std([-3, -1, 0, 1, 4], ddof=1) / math.sqrt(5)
    )


def test_under_five_seeds_points_and_no_interval() -> None:
    e = estimate([0.5, float("nan"), 0.7, 0.6], "test_accuracy")
    assert e.n == 3 and e.points == (0.5, 0.7, 0.6)
    assert math.isnan(e.lo) and math.isnan(e.hi) and not e.has_interval
    assert e.text() == "0.6 (seeds: 0.5, 0.7, 0.6)"
    undefined = estimate([float("nan")] * 6, "reward_spearman")  # constant vectors every seed
    assert undefined.n == 0 and undefined.text() == "n/a"


def _sign_flip_p(d: list[float]) -> float:
    """Exact two-sided signed-rank p by enumerating every sign assignment (midranks)."""
    nz = [v for v in d if v != 0]
    ranks = rankdata(np.abs(nz))
    observed = sum(r for r, v in zip(ranks, nz, strict=True) if v > 0)
    centre = ranks.sum() / 2
    stats = [
        sum(r for r, s in zip(ranks, signs, strict=True) if s)
        for signs in itertools.product((0, 1), repeat=len(nz))
    ]
    extreme = sum(abs(w - centre) >= abs(observed - centre) - 1e-12 for w in stats)
    return extreme / len(stats)


def _pairs(d: list[float]) -> tuple[dict[int, float], dict[int, float]]:
    return {i: 1.0 + v for i, v in enumerate(d)}, {i: 1.0 for i in range(len(d))}


def test_wilcoxon_exact_golden_values() -> None:
    # 6 seeds, all in one direction: 2 of the 64 sign patterns are as extreme -> 1/32.
    a, b = _pairs([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert paired_difference(a, b, "honest_profit").p_value == pytest.approx(1 / 32)
    # Tied magnitudes and a zero (dropped): the exact conditional distribution.
    d = [0.0, 0.1, 0.1, 0.2, -0.3, 0.4, 0.5]
    a, b = _pairs(d)
    r = paired_difference(a, b, "honest_profit")
    assert r.n == 7 and r.mean == pytest.approx(sum(d) / 7)
    assert r.p_value == pytest.approx(_sign_flip_p(d))
    assert r.p_value == pytest.approx(12 / 64)  # hand count of the 64 flips: 0.1875
    # No difference on any seed: no evidence, p = 1.
    a, b = _pairs([0.0] * 6)
    assert paired_difference(a, b, "test_accuracy").p_value == 1.0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.floats(-1, 1, allow_nan=False).filter(lambda v: abs(v) > 1e-6), min_size=3, max_size=3
    )
)
def test_three_seeds_never_below_a_quarter(d: list[float]) -> None:
    a, b = _pairs(d)
    p = paired_difference(a, b, "test_accuracy").p_value
    assert p >= 0.25 - 1e-12
    assert p == pytest.approx(_sign_flip_p(d))


def test_paired_t_matches_scipy_and_interval_is_clipped() -> None:
    base = {s: v for s, v in enumerate([0.50, 0.55, 0.60, 0.58, 0.52, 0.57])}
    other = {s: v for s, v in enumerate([0.90, 0.99, 0.97, 0.95, 0.93, 0.99])}
    r = paired_difference(other, base, "test_accuracy", test="t", method="t")
    assert r.p_value == pytest.approx(ttest_rel(list(other.values()), list(base.values())).pvalue)
    assert r.mean == pytest.approx(np.mean(np.subtract(list(other.values()), list(base.values()))))
    assert -1.0 <= r.lo <= r.mean <= r.hi <= 1.0
    few = paired_difference({1: 0.5, 2: 0.6}, {1: 0.4, 3: 0.1}, "test_accuracy")
    assert few.n == 1 and math.isnan(few.p_value)  # only seed 1 is shared


def test_summary_pairs_designs_on_shared_seeds() -> None:
    seeds = list(range(1, 7))
    acc_a = [0.60, 0.62, 0.64, 0.61, 0.63, 0.65]
    acc_b = [a + d for a, d in zip(acc_a, [0.05, 0.01, 0.03, 0.02, 0.06, 0.04], strict=True)]
    table = pd.DataFrame(
        {
            "design": ["m=a"] * 6 + ["m=b"] * 6,
            "m": ["a"] * 6 + ["b"] * 6,
            "seed": seeds * 2,
            "status": ["ok"] * 12,
            "test_accuracy": acc_a + acc_b,
            "reward_spearman": [float("nan")] * 12,
        }
    )
    s = summarize(table, ["m"]).set_index("design")
    assert s.loc["m=b", "paired_reference"] == "m=a"
    assert s.loc["m=b", "test_accuracy_diff"] == pytest.approx(0.035)
    assert s.loc["m=b", "test_accuracy_diff_n"] == 6
    assert s.loc["m=b", "test_accuracy_p"] == pytest.approx(1 / 32)  # all 6 positive, distinct
    assert 0.01 <= s.loc["m=b", "test_accuracy_diff_lo"] < s.loc["m=b", "test_accuracy_diff_hi"]
    assert math.isnan(s.loc["m=a", "test_accuracy_p"])  # the reference itself
    assert s.loc["m=a", "test_accuracy_n"] == 6
    assert 0.60 <= s.loc["m=a", "test_accuracy_lo"] <= s.loc["m=a", "test_accuracy_hi"] <= 0.65
    assert s.loc["m=a", "reward_spearman_n"] == 0  # undefined on every seed


def test_printed_summary_shows_points_and_paired_differences() -> None:
    import io

    from rich.console import Console

    from simulation.cli.compare import _print_summary

    seeds = list(range(1, 7))
    table = pd.DataFrame(
        {
            "design": ["m=a"] * 6 + ["m=b"] * 6 + ["m=c"] * 3,
            "seed": seeds * 2 + [1, 2, 3],
            "status": ["ok"] * 15,
            "test_accuracy": [0.6] * 6 + [0.61, 0.62, 0.63, 0.64, 0.65, 0.66] + [0.5, 0.6, 0.7],
        }
    )
    out = io.StringIO()
    _print_summary(Console(file=out, width=250), summarize(table, ()), "s")
    text = out.getvalue()
    assert "0.600 [0.600, 0.600]" in text  # constant: a degenerate interval, inside [0, 1]
    assert "0.600 (0.500, 0.600, 0.700)" in text  # 3 seeds: the points
    assert "minus m=a" in text
    assert "+0.035 (p 0.0312)" in text  # 6 positive distinct differences: 2/64
    assert "+0.000 (p 1)" in text  # m=c - m=a on seeds 1..3: 0.5-0.6, 0, 0.7-0.6 -> sum 0
