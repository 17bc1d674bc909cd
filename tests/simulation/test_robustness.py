"""A killed run leaves a ledger that verifies; a busy market is still deterministic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marketplace import Market, audit_ledger
from simulation.engine.runner import run_scenario
from simulation.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0, 2.0])
def test_run_killed_mid_way_leaves_a_verifiable_ledger(tmp_path: Path, delay: float) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulation.cli.main",
            "run",
            str(ROOT / "scenarios" / "mixed.yaml"),
            "--out",
            str(out),
            "--engine",
            "inprocess",
            "--set",
            "output.baseline=false",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Wait until the run has started writing its ledger, then kill it `delay` s later.
    start = time.monotonic()
    while not (out / "ledger.db").exists() and proc.poll() is None:
        assert time.monotonic() - start < 120, "the run never created its ledger"
        time.sleep(0.02)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (out / "ledger.db").exists()
    report = audit_ledger(out)
    assert report.entries > 0
    with Market.open(out) as m:
        assert m.head_hash == report.head_hash


def test_mixed_market_scenario_is_deterministic(tmp_path: Path) -> None:
    sc = load_scenario(ROOT / "scenarios" / "mixed.yaml", ["rounds=4", "output.baseline=false"])
    a = run_scenario(sc, tmp_path / "a", engine="inprocess")
    b = run_scenario(sc, tmp_path / "b", engine="inprocess")
    assert a.result.head_hash == b.result.head_hash
    assert a.result.market == b.result.market
    assert a.result.market.counters["licenses_sold"] >= 0
