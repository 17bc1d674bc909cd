"""Compute and check behaviour pins.

A pin is what a run of a shipped scenario at test size produced: its ledger head
(signed with the fixed test keyring) and the SHA-256 of its metric rows, sorted
and canonically encoded (not the Parquet bytes, which carry the pyarrow
version). Regenerate on purpose only, in a commit that says why the signed
bytes or metrics changed::

    .venv/bin/python -m tests.pins.pins --update
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
PINS = Path(__file__).with_name("scenarios.json")
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
# The size every shipped scenario runs at in the suite.
REDUCED = ["rounds=3", "training.epochs=1"]
# A round a scenario names must exist, so at test size the timeline rounds past
# round 3 move into the run (which then exercises them: late joiners who leave,
# flippers who attack).
TEST_SIZE_TIMELINE = {
    "churn": ["timeline.0.round=2", "timeline.1.round=3"],
    "mixed": ["timeline.0.start_round=2"],
}


# Populations past a few thousand run at 1,000 clients, as many per round.
TEST_SIZE_POPULATION = {"cross_device": ["clients.count=1000", "clients.fraction=0.1"]}


def reduced(path: Path) -> list[str]:
    """The overrides that run the shipped scenario ``path`` at test size."""
    return [
        *REDUCED,
        *TEST_SIZE_TIMELINE.get(path.stem, ()),
        *TEST_SIZE_POPULATION.get(path.stem, ()),
    ]


def _value(v: float) -> str:
    return "nan" if math.isnan(v) else repr(float(v))


def metric_rows_sha256(metrics: pd.DataFrame) -> str:
    """SHA-256 over the sorted ``(round, client, metric, value)`` rows, one line each."""
    lines = sorted(
        f"{int(r)}\t{c}\t{m}\t{_value(v)}"
        for r, c, m, v in metrics[["round", "client", "metric", "value"]].itertuples(index=False)
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def pin_of_run(out_dir: Path, head: str) -> dict[str, str]:
    """The pin of a finished run directory."""
    metrics = pd.read_parquet(out_dir / "metrics.parquet")
    return {"ledger_head": head, "metrics_sha256": metric_rows_sha256(metrics)}


def load_pins() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(PINS.read_text())
    return data


def _compute(path: Path) -> dict[str, str]:
    from simulation.engine.runner import run_scenario
    from simulation.scenario.load import load_scenario
    from tests.keyring import KEYRING

    with tempfile.TemporaryDirectory(prefix="fm-pin-") as tmp:
        scenario = load_scenario(path, reduced(path))
        # Heads depend on the keyring: pins are of the fixed test keyring.
        outcome = run_scenario(scenario, Path(tmp), engine="inprocess", keyring=KEYRING)
        return pin_of_run(Path(tmp), outcome.result.head_hash)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--update", action="store_true", help="rewrite scenarios.json")
    args = parser.parse_args(argv)
    pins = {p.stem: _compute(p) for p in SCENARIOS}
    if args.update:
        PINS.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")
        print(f"wrote {len(pins)} pins to {PINS}")
        return 0
    old = load_pins()
    bad = [k for k in pins if old.get(k) != pins[k]]
    for k in bad:
        print(f"{k}: pinned {old.get(k)} now {pins[k]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
