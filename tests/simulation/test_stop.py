"""A run stopped by SIGTERM or SIGINT (in process): it stops between clients, seals
the open block, and says where the partial ledger is; the ledger verifies."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from marketplace import Market, audit_ledger
from simulation.engine.runner import run_scenario
from simulation.errors import RunInterrupted
from simulation.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_cleanly(tmp_path: Path, signum: int) -> None:
    sc = load_scenario(
        ROOT / "scenarios" / "quickstart.yaml",
        ["clients.count=3", "rounds=5", "privacy={mode: none}", "model.name=logreg"],
    )

    def after_round(record: object) -> None:
        if getattr(record, "round", 0) == 2:
            os.kill(os.getpid(), signum)

    before = signal.getsignal(signum)
    with pytest.raises(RunInterrupted) as info:
        run_scenario(sc, tmp_path, engine="inprocess", on_round=after_round)
    assert info.value.signum == signum
    name = signal.Signals(signum).name
    assert str(info.value).startswith(f"stopped by {name} after round 2 of 5: ")
    assert str(tmp_path / "ledger.db") in str(info.value)
    assert signal.getsignal(signum) == before  # the handler was put back
    audit_ledger(tmp_path)
    with Market.open(tmp_path) as m:
        entries = list(m.entries())
        versions = m.versions()
    assert entries[-1].kind == "checkpoint"
    started = [e.data["round"] for e in entries if e.kind == "round_started"]
    assert started == [1, 2, 3]  # round 3 began, none of its clients trained
    assert [v.round for v in versions] == [1, 2]
    assert not (tmp_path / "manifest.json").exists()
