"""Registry metrics: which split they come from, what they mean, and that nothing
machine-dependent is signed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from marketplace import Market
from simulation.errors import ScenarioError
from simulation.fl import evaluation
from simulation.fl.data import build_federated_data
from simulation.fl.evaluation import (
    GROUP_ATTRIBUTES,
    equalized_odds_difference,
    measure_latency,
    recall_gap,
)
from simulation.scenario.load import load_scenario

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "scenarios" / "quickstart.yaml"
VECTORS = REPO / "tests" / "fixtures" / "fairness" / "eod_vectors.json"


def test_recall_gap_hand_derived() -> None:
    # per-class recall: class 0 2/2, class 1 1/2, class 2 1/2; class 3 absent is ignored
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 0, 2, 0])
    assert recall_gap(y, pred, num_classes=4) == pytest.approx(0.5)
    assert recall_gap(y, y, num_classes=4) == 0.0


def test_equalized_odds_difference_matches_fairlearn() -> None:
    cases = json.loads(VECTORS.read_text())["cases"]
    assert len(cases) == 12
    for case in cases:
        y, pred, g = (np.array(case[k]) for k in ("y", "pred", "groups"))
        got = equalized_odds_difference(y, pred, g)
        assert got == pytest.approx(case["equalized_odds_difference"], abs=1e-12)
        # the same with the other class called positive
        assert equalized_odds_difference(1 - y, 1 - pred, g) == pytest.approx(got, abs=1e-12)


def test_equalized_odds_difference_hand_derived_and_undefined_cases() -> None:
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    pred = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    g = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # group 0: TPR 1, FPR 0; group 1: TPR 1/2, FPR 1 -> max(1/2, 1) = 1
    assert equalized_odds_difference(y, pred, g) == pytest.approx(1.0)
    # a group without negatives has no FPR: undefined, not 0
    assert equalized_odds_difference(y[:6], pred[:6], g[:6]) is None
    assert equalized_odds_difference(np.array([0, 2]), np.array([0, 2]), np.array([0, 1])) is None


def test_breast_cancer_groups_by_tumour_size_at_the_training_mean() -> None:
    data = build_federated_data(*_breast_cancer_spec())
    # features are standardised with the training split's statistics, so the
    # training mean of 'mean radius' (feature 0) sits at 0
    assert abs(float(data.x_train[:, 0].mean())) < 1e-5
    groups = GROUP_ATTRIBUTES.get("breast_cancer").of(data.x_val)
    assert np.array_equal(groups, (data.x_val[:, 0] >= 0).astype(np.int64))
    assert set(np.unique(groups)) == {0, 1}
    assert "digits" not in GROUP_ATTRIBUTES and "synthetic" not in GROUP_ATTRIBUTES


def _breast_cancer_spec() -> tuple[Any, ...]:
    scenario = load_scenario(QUICKSTART, ["dataset.name=breast_cancer"])
    return (scenario.dataset, scenario.partition, scenario.clients.count, scenario.seed)


def test_measure_latency_is_the_median_of_the_timed_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # warm-up passes take 1000 ms (ignored); timed ones 3, 1, 100, 2, 4 ms -> median 3
    durations = [1000.0, 1000.0, 3.0, 1.0, 100.0, 2.0, 4.0]
    ticks: Iterator[int] = iter(t for d in durations for t in (0, int(d * 1e6)))
    monkeypatch.setattr(evaluation.time, "perf_counter_ns", lambda: next(ticks))
    got = measure_latency(torch.nn.Linear(3, 2), (3,), repeats=5, warmup=2)
    assert got.median_ms == 3.0 and got.repeats == 5 and got.warmup == 2


def test_validation_fraction_zero_is_a_scenario_error() -> None:
    with pytest.raises(ScenarioError, match="validation_fraction"):
        load_scenario(QUICKSTART, ["dataset.validation_fraction=0"])


def test_signed_metrics_are_validation_results_and_latency_is_unsigned(tmp_path: Path) -> None:
    """One breast_cancer round: the version's signed ``accuracy`` is the final model's
    accuracy on the validation split, ``test_accuracy`` on the test split, recomputed
    here with numpy from the saved weights; measured latency is in the manifest only."""
    from simulation.engine.runner import run_scenario

    overrides = ["dataset.name=breast_cancer", "rounds=1", "clients.count=3", "model.name=logreg"]
    scenario = load_scenario(QUICKSTART, overrides)
    run_scenario(scenario, tmp_path, engine="inprocess", force=True)
    with Market.open(tmp_path) as market:
        (version,) = market.versions()
        records = [json.dumps(e.data) for e in market.entries()]
    data = build_federated_data(
        scenario.dataset, scenario.partition, scenario.clients.count, scenario.seed
    )
    w = load_file(str(tmp_path / "model.safetensors"))
    weight, bias = w["1.weight"].astype(np.float64), w["1.bias"].astype(np.float64)

    def accuracy(x: np.ndarray, y: np.ndarray) -> float:
        pred = (x.astype(np.float64) @ weight.T + bias).argmax(axis=1)
        return float((pred == y).mean())

    val_acc, test_acc = accuracy(data.x_val, data.y_val), accuracy(data.x_test, data.y_test)
    assert val_acc != test_acc  # the two splits tell them apart
    assert version.metrics["accuracy"] == pytest.approx(val_acc, abs=1e-6)
    assert version.metrics["test_accuracy"] == pytest.approx(test_acc, abs=1e-6)
    assert "equalized_odds_difference" in version.metrics
    assert "bias" not in version.metrics and "latency_ms" not in version.metrics
    assert version.metrics["parameters"] == 30 * 2 + 2
    assert version.metrics["size_bytes"] == 4 * (30 * 2 + 2)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    latency = manifest["measured_latency_ms"]
    assert latency["repeats"] == 50 and latency["median_ms"] > 0
    assert not any("median_ms" in r or "measured" in r for r in records)


@settings(max_examples=15, deadline=None)
@given(
    st.integers(2, 12).flatmap(
        lambda k: st.tuples(
            st.just(k),
            st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1),
        )
    )
)
def test_split_metrics_macro_scores_are_scikit_learns(
    case: tuple[int, list[tuple[int, int]]],
) -> None:
    # split_metrics takes macro precision/recall/F1 and the recall gap from one per-class
    # count: the very floats of scikit-learn's average="macro" (absent classes included).
    from sklearn.metrics import precision_recall_fscore_support

    from simulation.fl.evaluation import _class_scores

    k, pairs = case
    y, pred = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    ref = precision_recall_fscore_support(
        y, pred, labels=list(range(k)), average="macro", zero_division=0
    )
    got = _class_scores(y, pred, k)
    assert got.macro() == tuple(float(v) for v in ref[:3])
    # _class_scores hands scikit-learn the (label, prediction) cell counts as sample
    # weights; per class, the same floats as scikit-learn on the full arrays.
    per_class = precision_recall_fscore_support(
        y, pred, labels=list(range(k)), average=None, zero_division=0
    )
    for mine, theirs in zip((got.precision, got.recall, got.f1), per_class[:3], strict=True):
        assert mine.dtype == np.asarray(theirs).dtype
        assert mine.tobytes() == np.asarray(theirs).tobytes()
    assert got.support.tolist() == np.asarray(per_class[3]).tolist()  # counts: float or int


def test_class_scores_refuse_labels_outside_the_classes() -> None:
    from simulation.fl.evaluation import _class_scores

    with pytest.raises(ValueError, match=r"predictions outside 0\.\.2"):
        _class_scores(np.array([0, 1]), np.array([0, 3]), 3)
    with pytest.raises(ValueError, match=r"labels outside 0\.\.2"):
        _class_scores(np.array([-1, 1]), np.array([0, 1]), 3)
