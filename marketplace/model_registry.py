"""Model-registry queries: search versions by their metrics, match artifacts.

The registry stores whatever numbers a version is registered with; a search on
a metric a version lacks excludes that version. The simulation registers each
global model version with these names (``simulation/fl/evaluation.py``):

Validation split (what a buyer filters on):
    ``accuracy``, ``loss`` (mean cross-entropy), ``precision``, ``recall``,
    ``f1`` (macro averages over classes), ``recall_gap`` (largest minus
    smallest per-class recall: how unevenly the classes are recognised) and,
    where the dataset defines groups, ``equalized_odds_difference`` (the larger
    between-group gap of true- and false-positive rates).
Test split (the researcher's ground truth, kept apart):
    the same names prefixed ``test_`` (``test_accuracy``, ``test_loss``, ...).
Footprint:
    ``parameters`` (trainable scalars), ``size_bytes`` (bytes of the weight
    tensors) and ``modelled_latency_ms`` (forward FLOPs over a reference
    server speed: a deterministic model; measured latency is machine-dependent
    and never signed).

Models imported from the Hugging Face Hub carry only the footprint they can
prove from their files: ``parameters`` and ``size_bytes``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from marketplace.state import ModelVersion

__all__ = [
    "ARTIFACT_FILE",
    "FOOTPRINT_METRICS",
    "METRIC_NAMES",
    "TEST_PREFIX",
    "VALIDATION_METRICS",
    "artifact_sha256",
    "search_versions",
]

ARTIFACT_FILE = "model.safetensors"
TEST_PREFIX = "test_"
VALIDATION_METRICS = (
    "accuracy",
    "loss",
    "precision",
    "recall",
    "f1",
    "recall_gap",
    "equalized_odds_difference",
)
FOOTPRINT_METRICS = ("parameters", "size_bytes", "modelled_latency_ms")
METRIC_NAMES = (
    *VALIDATION_METRICS,
    *(TEST_PREFIX + m for m in VALIDATION_METRICS),
    *FOOTPRINT_METRICS,
)
"""Every metric name the simulation registers versions with."""


def artifact_sha256(path: Path | str) -> str:
    """SHA-256 of a weights file, or of ``model.safetensors`` inside a directory."""
    p = Path(path)
    if p.is_dir():
        p = p / ARTIFACT_FILE
    h = hashlib.sha256()
    with p.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def search_versions(
    versions: Iterable[ModelVersion],
    *,
    minimum: Mapping[str, float] | None = None,
    maximum: Mapping[str, float] | None = None,
    contributor: str | None = None,
    round_min: int | None = None,
    imported: Mapping[str, str] | None = None,
) -> list[ModelVersion]:
    """Versions whose metrics satisfy every ``minimum``/``maximum`` bound and, given
    ``imported``, imported models whose metadata has each of its values (a version
    trained in the run has no such metadata, so it never matches)."""
    out: list[ModelVersion] = []
    for v in versions:
        if contributor is not None and contributor not in v.contributors:
            continue
        if round_min is not None and v.round < round_min:
            continue
        if imported and (
            v.imported is None or any(v.imported.get(k) != x for k, x in imported.items())
        ):
            continue
        ok = all(k in v.metrics and v.metrics[k] >= b for k, b in (minimum or {}).items())
        ok = ok and all(k in v.metrics and v.metrics[k] <= b for k, b in (maximum or {}).items())
        if ok:
            out.append(v)
    return out
