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
    assert "DEPRECATED" not in res.output  # no run_simulation: Flower's supported runtime
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


FAULTY = [
    "--set",
    "clients.count=4",
    "--set",
    "rounds=2",
    "--set",
    "training.epochs=1",
    "--set",
    "faults=[{client: 0, kind: nan}, {client: 1, kind: crash, rounds: [1]}]",
]


def test_a_crashing_client_gives_one_ledger_head_on_both_engines_twice(tmp_path: Path) -> None:
    """A client that raises is rejected with the same short reason on either engine
    (no Ray traceback, pid or address in the ledger), so two Flower runs and two
    in-process runs of the same scenario and seed sign byte-identical ledgers."""
    from marketplace import Market

    heads = []
    for i, engine in enumerate(["flower", "flower", "inprocess", "inprocess"]):
        out = tmp_path / f"{engine}-{i}"
        res = runner.invoke(
            app, ["run", str(QUICKSTART), "--out", str(out), "--engine", engine, *FAULTY]
        )
        assert res.exit_code == 0, res.output
        heads.append(json.loads((out / "manifest.json").read_text())["ledger_head"])
        with Market.open(out) as m:
            rejected = [e.data for e in m.entries() if e.kind == "contribution_rejected"]
        by = {(r["round"], r["client"]): r["reason"] for r in rejected}
        assert by[(1, "client-000")].startswith("non_finite: ")
        assert by[(2, "client-000")] == by[(1, "client-000")]
        assert by[(1, "client-001")] == "client_error: raised RuntimeError"
        assert len(by) == 3
        assert ray_stopped()
    assert len(set(heads)) == 1, heads
