"""Model-registry queries: search versions by validation results, match artifacts.

Validation metrics recorded per version (by the simulation) use these names:
``accuracy``, ``precision``, ``recall``, ``f1``, ``bias`` (largest gap in
per-class recall), ``latency_ms`` (inference), ``num_params`` and
``size_bytes``. The registry stores whatever numbers it is given; searches on a
metric a version lacks exclude that version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from marketplace.state import ModelVersion

__all__ = ["ARTIFACT_FILE", "METRIC_NAMES", "artifact_sha256", "search_versions"]

ARTIFACT_FILE = "model.safetensors"
METRIC_NAMES = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "bias",
    "latency_ms",
    "num_params",
    "size_bytes",
)


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
) -> list[ModelVersion]:
    """Versions whose metrics satisfy every ``minimum``/``maximum`` bound."""
    out: list[ModelVersion] = []
    for v in versions:
        if contributor is not None and contributor not in v.contributors:
            continue
        if round_min is not None and v.round < round_min:
            continue
        ok = all(k in v.metrics and v.metrics[k] >= b for k, b in (minimum or {}).items())
        ok = ok and all(k in v.metrics and v.metrics[k] <= b for k, b in (maximum or {}).items())
        if ok:
            out.append(v)
    return out
