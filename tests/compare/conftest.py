"""Shared fixtures: a tiny base scenario and a hand-made run directory writer."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "scenarios" / "quickstart.yaml"

#: Shrinks quickstart so an inprocess run takes about a second.
TINY = {"rounds": 1, "clients.count": 4, "training.epochs": 1, "output.save_model": False}
TINY_SET = [f"{k}={json.dumps(v)}" for k, v in TINY.items()]

Rows = Sequence[tuple[int, str, str, float]]


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Write a minimal run directory (manifest, metrics, ground truth) by hand."""

    def make(
        name: str,
        rows: Rows,
        *,
        attackers: Sequence[str] = (),
        behaviours: dict[str, str] | None = None,
        roles: dict[str, str] | None = None,
        final: dict[str, Any] | None = None,
        wall: float = 1.5,
    ) -> Path:
        d = tmp_path / name
        d.mkdir()
        manifest = {
            "final": final or {"test_accuracy": 0.9, "test_loss": 0.3, "epsilon_max": 2.0},
            "wall_seconds": wall,
        }
        (d / "manifest.json").write_text(json.dumps(manifest))
        frame = pd.DataFrame(list(rows), columns=["round", "client", "metric", "value"])
        frame.to_parquet(d / "metrics.parquet", index=False)
        truth: dict[str, Any] = {"attackers": list(attackers), "behaviours": behaviours or {}}
        if roles is not None:
            truth["roles"] = roles
        (d / "ground_truth.json").write_text(json.dumps(truth))
        return d

    return make


def write_sweep(path: Path, text: str) -> Path:
    """Write a sweep file whose base is the repository's quickstart scenario."""
    path.write_text(text.replace("BASE", str(QUICKSTART)), encoding="utf-8")
    return path
