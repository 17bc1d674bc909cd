"""What the model registry records about a model version, and how it is measured.

A version's signed metrics (``Market.register_model_version``) are what a buyer
filters on, so every one is a deterministic function of the weights, the data
and the architecture: the ledger that records them is byte-reproducible.

* **Validation results** (plain names: ``accuracy``, ``loss``, ``precision``,
  ``recall``, ``f1``, ``recall_gap``, ``equalized_odds_difference``) are measured
  on the server's *validation* split, the data a platform may look at before
  publishing a version.
* **Test results** (the same names prefixed ``test_``) are measured on the
  held-out *test* split, the researcher's ground truth (``rounds.parquet``'s
  ``test_accuracy``; the yardstick of the rating-shift statistic). They are kept
  under their own names so that a search never mixes the two.
* **Footprint**: ``parameters`` (trainable scalars), ``size_bytes`` (bytes of the
  weight tensors, the payload of the version's ``model.safetensors``; not the
  runtime memory) and ``modelled_latency_ms`` (forward FLOPs of one example over
  a reference server of :data:`REFERENCE_SERVER_GFLOPS`, a model, not a timing).

Measured latency (:func:`measure_latency`: timed single-example inference, the
median of repeats) depends on the machine and its load, so it is written to the
run's ``manifest.json`` only, never to a signed entry or the metrics table.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import precision_recall_fscore_support
from sklearn.utils.extmath import _nanaverage
from torch import nn

from simulation.fl.models import parameter_count, state_aliases
from simulation.fl.training import predict, scored
from simulation.registry import Registry

__all__ = [
    "GROUP_ATTRIBUTES",
    "REFERENCE_SERVER_GFLOPS",
    "Footprint",
    "GroupAttribute",
    "LatencyMeasurement",
    "SplitMetrics",
    "equalized_odds_difference",
    "footprint",
    "measure_latency",
    "recall_gap",
    "registry_metrics",
    "split_metrics",
]

REFERENCE_SERVER_GFLOPS = 10.0
TEST_PREFIX = "test_"


@dataclass(frozen=True, slots=True)
class SplitMetrics:
    """A model's quality on one split.

    ``recall_gap`` is the largest difference between two classes' recalls (over
    the classes present in the split): 0 when every class is recognised equally
    well. ``equalized_odds_difference`` is ``None`` where the dataset defines no
    group attribute (see :data:`GROUP_ATTRIBUTES`) or a group lacks a class.
    """

    accuracy: float
    loss: float
    precision: float
    recall: float
    f1: float
    recall_gap: float
    equalized_odds_difference: float | None = None

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """The metrics under their registry names (``prefix`` + field), ``None`` left out."""
        values = {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "recall_gap": self.recall_gap,
            "equalized_odds_difference": self.equalized_odds_difference,
        }
        return {prefix + k: float(v) for k, v in values.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Footprint:
    """What a version costs to store and run, independent of the data."""

    modelled_latency_ms: float
    parameters: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class GroupAttribute:
    """A binary group of each example, computed from its (preprocessed) features."""

    name: str
    description: str
    of: Callable[[np.ndarray], np.ndarray]


GROUP_ATTRIBUTES: Registry[GroupAttribute] = Registry("group attribute")
"""Group attributes by dataset name. None of the bundled datasets has a protected
attribute (``digits`` has none at all; ``synthetic``'s only grouping is the client
that generated a row). ``breast_cancer`` is grouped by tumour size, so its
equalized-odds difference says whether small tumours are diagnosed as reliably as
large ones."""

GROUP_ATTRIBUTES.register(
    "breast_cancer",
    GroupAttribute(
        name="mean_radius_above_train_mean",
        description="the 'mean radius' feature at or above its training-split mean",
        # Features are standardised with the training split's mean and std
        # (simulation/fl/data.py), so "at or above the mean" is ">= 0".
        of=lambda x: (np.asarray(x)[:, 0] >= 0.0).astype(np.int64),
    ),
)


def recall_gap(y: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Largest minus smallest per-class recall over the classes present in ``y``."""
    return _class_scores(y, pred, num_classes).recall_gap()


@dataclass(frozen=True)
class _ClassScores:
    """scikit-learn's per-class precision, recall, F1 and support of one prediction."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray

    def macro(self) -> tuple[float, float, float]:
        """Macro precision, recall, F1: scikit-learn's own average of the per-class
        values, so the same floats as ``average="macro"`` from one confusion count."""
        return (
            float(_nanaverage(self.precision)),
            float(_nanaverage(self.recall)),
            float(_nanaverage(self.f1)),
        )

    def recall_gap(self) -> float:
        present = self.recall[self.support > 0]
        return float(present.max() - present.min()) if present.size else 0.0


def _class_scores(y: np.ndarray, pred: np.ndarray, num_classes: int) -> _ClassScores:
    """scikit-learn's per-class scores of ``pred`` against ``y``, from their
    ``(label, prediction)`` cell counts passed as sample weights: scikit-learn
    then validates and encodes at most ``num_classes²`` rows instead of every test
    row (500,000 at 100,000 clients), and every count it divides is the same
    integer (held as a float64), so the floats are the same as on the full arrays."""
    k = num_classes
    y, pred = np.asarray(y).astype(np.int64), np.asarray(pred).astype(np.int64)
    if y.shape != pred.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and predictions {pred.shape} differ")
    for name, v in (("labels", y), ("predictions", pred)):
        if v.size and (v.min() < 0 or v.max() >= k):
            raise ValueError(f"{name} outside 0..{k - 1}")
    cells = np.bincount(y * k + pred, minlength=k * k)
    used = np.flatnonzero(cells)
    p, r, f, support = precision_recall_fscore_support(
        used // k,
        used % k,
        sample_weight=cells[used],
        labels=list(range(k)),
        average=None,
        zero_division=0,
    )
    # ``support`` comes back as float counts (scikit-learn's own dtype varies too); only
    # ``support > 0`` is read.
    return _ClassScores(np.asarray(p), np.asarray(r), np.asarray(f), np.asarray(support))


def equalized_odds_difference(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> float | None:
    """Hardt et al. (2016)'s equalized odds, as a difference (fairlearn's definition):
    the larger of the between-group ranges of the true-positive rate and of the
    false-positive rate, class 1 positive (the value is the same with class 0
    positive). ``None`` unless ``y`` is binary and every group has both classes,
    where a rate is undefined."""
    y, pred, groups = np.asarray(y), np.asarray(pred), np.asarray(groups)
    if not np.isin(y, (0, 1)).all():
        return None
    tpr, fpr = [], []
    for g in np.unique(groups):
        in_g = groups == g
        pos, neg = in_g & (y == 1), in_g & (y == 0)
        if not pos.any() or not neg.any():
            return None
        tpr.append(float((pred[pos] == 1).mean()))
        fpr.append(float((pred[neg] == 1).mean()))
    if len(tpr) < 2:
        return 0.0
    return max(max(tpr) - min(tpr), max(fpr) - min(fpr))


def split_metrics(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    input_shape: tuple[int, ...],
    num_classes: int,
    groups: np.ndarray | None = None,
) -> SplitMetrics:
    """Accuracy, mean cross-entropy, macro precision/recall/F1, recall gap and, given
    ``groups``, the equalized-odds difference of ``model`` on ``(x, y)``."""
    if len(y) == 0:
        raise ValueError("cannot evaluate a model on an empty split")
    loss, acc, pred = scored(predict(model, x, input_shape), y)
    per_class = _class_scores(y, pred, num_classes)
    p, r, f = per_class.macro()
    eod = equalized_odds_difference(y, pred, groups) if groups is not None else None
    return SplitMetrics(
        accuracy=float(acc),
        loss=float(loss),
        precision=float(p),
        recall=float(r),
        f1=float(f),
        recall_gap=per_class.recall_gap(),
        equalized_odds_difference=eod,
    )


def footprint(model: nn.Module, flops_per_example: float) -> Footprint:
    """Parameter count, weight bytes (each tensor once: Opacus' DPLSTM lists its weights
    under two names) and modelled latency of ``model``."""
    aliases = state_aliases(model)
    tensors = [t for k, t in model.state_dict().items() if k not in aliases]
    size = sum(t.numel() * t.element_size() for t in tensors)
    return Footprint(
        modelled_latency_ms=float(flops_per_example / (REFERENCE_SERVER_GFLOPS * 1e9) * 1e3),
        parameters=parameter_count(model),
        size_bytes=int(size),
    )


def registry_metrics(
    validation: SplitMetrics, test: SplitMetrics, fp: Footprint
) -> dict[str, float]:
    """The metrics a version is registered with: validation results under plain
    names, test results prefixed ``test_``, and the footprint."""
    out = validation.as_dict() | test.as_dict(TEST_PREFIX)
    out["modelled_latency_ms"] = fp.modelled_latency_ms
    out["parameters"] = float(fp.parameters)
    out["size_bytes"] = float(fp.size_bytes)
    return out


@dataclass(frozen=True, slots=True)
class LatencyMeasurement:
    """Timed inference of one example: the median over ``repeats`` forward passes."""

    median_ms: float
    repeats: int
    warmup: int
    threads: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median_ms": self.median_ms,
            "repeats": self.repeats,
            "warmup": self.warmup,
            "threads": self.threads,
        }


def measure_latency(
    model: nn.Module, input_shape: tuple[int, ...], *, repeats: int = 50, warmup: int = 5
) -> LatencyMeasurement:
    """Time ``repeats`` single-example forward passes (after ``warmup`` untimed ones)
    with a monotonic clock and return their median, which one slow pass on a busy
    machine does not move."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    model.eval()
    x = torch.zeros((1, *input_shape))
    timings = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter_ns()
            model(x)
            elapsed = time.perf_counter_ns() - start
            if i >= warmup:
                timings.append(elapsed / 1e6)
    return LatencyMeasurement(
        median_ms=float(statistics.median(timings)),
        repeats=repeats,
        warmup=warmup,
        threads=torch.get_num_threads(),
    )
