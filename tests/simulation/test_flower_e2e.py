"""End to end through Flower's Simulation Engine (Ray): the product path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulation.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
runner = CliRunner()

pytestmark = pytest.mark.slow


def ray_stopped() -> bool:
    import ray

    return not ray.is_initialized()


def test_quickstart_end_to_end_meets_accuracy_and_privacy(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    res = runner.invoke(app, ["run", str(QUICKSTART), "--out", str(out)])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["final"]["test_accuracy"] >= 0.80
    assert manifest["final"]["epsilon_max"] <= 10.0
    assert ray_stopped()
    verify = runner.invoke(app, ["ledger", "verify", str(out)])
    assert verify.exit_code == 0, verify.output
    # The Flower path and the plain in-process loop train identically.
    res = runner.invoke(
        app, ["run", str(QUICKSTART), "--out", str(tmp_path / "ip"), "--engine", "inprocess"]
    )
    assert res.exit_code == 0, res.output
    ip = json.loads((tmp_path / "ip" / "manifest.json").read_text())
    assert ip["ledger_head"] == manifest["ledger_head"]


def test_flower_path_rejects_bad_updates_and_survives_client_crash(tmp_path: Path) -> None:
    out = tmp_path / "faulty"
    res = runner.invoke(
        app,
        [
            "run",
            str(QUICKSTART),
            "--out",
            str(out),
            "--set",
            "clients.count=4",
            "--set",
            "rounds=2",
            "--set",
            "training.epochs=1",
            "--set",
            "faults=[{client: 0, kind: nan}, {client: 1, kind: crash, rounds: [1]}]",
        ],
    )
    assert res.exit_code == 0, res.output
    from marketplace import Market

    with Market.open(out) as m:
        rejected = [e.data for e in m.entries() if e.kind == "contribution_rejected"]
    by = {(r["round"], r["client"]): r["reason"] for r in rejected}
    assert by[(1, "client-000")].startswith("non-finite")
    assert by[(2, "client-000")].startswith("non-finite")
    assert by[(1, "client-001")].startswith("client error")
    assert len(by) == 3
    assert ray_stopped()
