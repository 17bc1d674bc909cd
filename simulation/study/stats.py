"""Statistics over a study's seeds: intervals of a design's mean and paired differences.

Studies have few seeds (3 to 10), so the choices here are the ones a reviewer
accepts for small samples:

* The interval of a mean is the **percentile bootstrap** over seeds (Efron &
  Tibshirani 1993, ch. 13; ``scipy.stats.bootstrap``), resampled from a seeded
  generator so a summary is byte-identical on every rebuild; the Student t
  interval is an option. Either is clipped to the metric's natural range
  (:data:`simulation.results.metrics.METRIC_RANGES`): an accuracy interval never
  leaves [0, 1], an ε interval never goes below 0.
* With fewer than :data:`MIN_SEEDS` seeds no interval is given at all (NaN):
  the per-seed values are shown instead, because two or three points say
  nothing reliable about spread.
* Designs of one study train on the same seeds, so they are compared **paired**
  by seed: the mean of the per-seed differences, its interval, and the
  two-sided p of the Wilcoxon signed-rank test (default; exact: zero
  differences dropped as in Wilcoxon's original rule, and with tied
  magnitudes the exact conditional distribution over all ``2^n`` sign flips)
  or of the paired t test. With n non-zero differences the smallest
  two-sided exact Wilcoxon p is ``2 / 2^n``: 0.25 for 3 seeds, 0.03125 for 6.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from simulation.results.metrics import metric_range

__all__ = [
    "CONFIDENCE",
    "MIN_SEEDS",
    "Estimate",
    "IntervalMethod",
    "PairedDifference",
    "PairedTest",
    "estimate",
    "paired_difference",
]

IntervalMethod = Literal["bootstrap", "t"]
PairedTest = Literal["wilcoxon", "t"]

#: Fewer seeds than this: per-seed points, no interval.
MIN_SEEDS = 5
#: Two-sided confidence of every interval.
CONFIDENCE = 0.95
#: Bootstrap resamples (odd, so the percentiles fall on resampled values).
N_RESAMPLES = 9999
#: Exact enumeration of sign flips up to this many non-zero differences.
_MAX_EXACT = 20

NAN = float("nan")


@dataclass(frozen=True, slots=True)
class Estimate:
    """A design's mean over seeds, the interval (NaN below :data:`MIN_SEEDS`) and the points."""

    n: int
    mean: float
    lo: float
    hi: float
    points: tuple[float, ...]

    @property
    def has_interval(self) -> bool:
        """Whether an interval was computed (enough seeds)."""
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    def text(self, digits: int = 4) -> str:
        """``mean [lo, hi]``, or ``mean (seeds: a, b, c)`` without an interval; ``n/a`` when
        undefined on every seed."""
        if self.n == 0:
            return "n/a"
        if self.has_interval:
            return f"{self.mean:.{digits}g} [{self.lo:.{digits}g}, {self.hi:.{digits}g}]"
        seeds = ", ".join(f"{v:.{digits}g}" for v in self.points)
        return f"{self.mean:.{digits}g} (seeds: {seeds})"


@dataclass(frozen=True, slots=True)
class PairedDifference:
    """Design minus reference on the seeds both ran: mean difference, interval, test."""

    n: int
    mean: float
    lo: float
    hi: float
    p_value: float
    test: PairedTest


def _clean(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[~np.isnan(x)]


def _interval(
    x: np.ndarray, method: IntervalMethod, rng: np.random.Generator
) -> tuple[float, float]:
    if method == "t":
        from scipy.stats import t

        half = float(t.ppf((1 + CONFIDENCE) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
        return float(x.mean()) - half, float(x.mean()) + half
    if np.ptp(x) == 0:  # every resample has the same mean
        return float(x[0]), float(x[0])
    from scipy.stats import bootstrap

    ci = bootstrap(
        (x,),
        np.mean,
        n_resamples=N_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=rng,
    ).confidence_interval
    return float(ci.low), float(ci.high)


def _rng(key: Sequence[str | int], seed: int) -> np.random.Generator:
    from simulation.rng import SeedTree

    return SeedTree(seed).numpy("bootstrap", *key)


def estimate(
    values: Sequence[float],
    metric: str,
    *,
    method: IntervalMethod = "bootstrap",
    key: Sequence[str | int] = (),
    seed: int = 0,
) -> Estimate:
    """Mean over seeds (NaN values, i.e. undefined on that seed, dropped) and its
    interval clipped to ``metric``'s range; ``key`` names the resampling stream
    (e.g. the design) so each summary cell is reproducible on its own."""
    x = _clean(values)
    if x.size == 0:
        return Estimate(0, NAN, NAN, NAN, ())
    mean = float(x.mean())
    points = tuple(float(v) for v in x)
    if x.size < MIN_SEEDS:
        return Estimate(int(x.size), mean, NAN, NAN, points)
    lo, hi = _interval(x, method, _rng((*key, metric), seed))
    low, high = metric_range(metric)
    return Estimate(int(x.size), mean, max(lo, low), min(hi, high), points)


def _wilcoxon_p(d: np.ndarray) -> float:
    from scipy.stats import PermutationMethod, wilcoxon

    nonzero = d[d != 0]
    if nonzero.size == 0:
        return 1.0  # identical on every seed: no evidence of a difference
    magnitudes = np.abs(nonzero)
    if nonzero.size > _MAX_EXACT:
        return float(wilcoxon(nonzero, method="asymptotic").pvalue)
    if np.unique(magnitudes).size == magnitudes.size:
        return float(wilcoxon(nonzero, method="exact").pvalue)
    # Tied magnitudes: scipy's "exact" assumes distinct ranks; enumerate all sign flips.
    flips = PermutationMethod(n_resamples=2**nonzero.size)
    return float(wilcoxon(nonzero, method=flips).pvalue)


def _paired_t_p(d: np.ndarray) -> float:
    if np.ptp(d) == 0:
        return 1.0 if d[0] == 0 else 0.0  # no spread: the difference is certain
    from scipy.stats import ttest_1samp

    return float(ttest_1samp(d, 0.0).pvalue)


def paired_difference(
    design: Mapping[int, float],
    reference: Mapping[int, float],
    metric: str,
    *,
    test: PairedTest = "wilcoxon",
    method: IntervalMethod = "bootstrap",
    key: Sequence[str | int] = (),
    seed: int = 0,
) -> PairedDifference:
    """``design - reference`` on the seeds where both are defined (keys are seeds).

    The interval (NaN below :data:`MIN_SEEDS` pairs) is clipped to the range a
    difference of ``metric`` can take; the p value needs at least two pairs.
    """
    seeds = sorted(
        s
        for s in set(design) & set(reference)
        if not (math.isnan(design[s]) or math.isnan(reference[s]))
    )
    d = np.array([design[s] - reference[s] for s in seeds], dtype=float)
    if d.size == 0:
        return PairedDifference(0, NAN, NAN, NAN, NAN, test)
    mean = float(d.mean())
    p = NAN
    if d.size >= 2:
        p = _wilcoxon_p(d) if test == "wilcoxon" else _paired_t_p(d)
    lo = hi = NAN
    if d.size >= MIN_SEEDS:
        lo, hi = _interval(d, method, _rng((*key, metric, "paired"), seed))
        low, high = metric_range(metric)
        lo, hi = max(lo, low - high), min(hi, high - low)
    return PairedDifference(int(d.size), mean, lo, hi, p, test)
