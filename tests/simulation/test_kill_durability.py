"""A run SIGKILLed at a random moment leaves a ledger that verifies and is an exact
prefix of the uninterrupted run's ledger with the same seed (entry records byte for
byte), over many kill moments.

The runs are forked from one prepared process (the "zygote": it imported torch
and the world once), so each trial costs the run, not a two-second import; the
kill goes to the forked child by pid, which stays a zombie (its pid unreusable)
until the zygote is told to reap it.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marketplace import audit_ledger
from marketplace.ledger import connect
from tests.procs import alive

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "ballot_stuffing.yaml"
OVERRIDES = ["rounds=5", "training.epochs=1", "output.baseline=false"]
TRIALS = 30
MID_RUN = 20  # kills that must land before the run's last entry

ZYGOTE = r"""
import os, sys, traceback
from simulation.engine.runner import run_scenario
from simulation.scenario.load import load_scenario
import simulation.world.core  # torch and the world, imported before any fork

scenario = load_scenario(sys.argv[1], sys.argv[2:])
print("ready", flush=True)
for line in sys.stdin:
    out = line.strip()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            run_scenario(scenario, out, engine="inprocess")
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    print(pid, flush=True)
    sys.stdin.readline()  # "reap": the test has killed the child (or seen it finish)
    _, status = os.waitpid(pid, 0)
    print(status, flush=True)
"""


def _records(run: Path) -> list[str]:
    # The ledger's own read-only open: it rolls back a transaction the kill left open
    # (a hot journal), which a bare ``mode=ro`` connection cannot read past.
    conn = connect(run / "ledger.db", readonly=True)
    try:
        return [r for (r,) in conn.execute("SELECT record FROM entries ORDER BY seq")]
    finally:
        conn.close()


class Zygote:
    def __init__(self, tmp: Path) -> None:
        script = tmp / "zygote.py"
        script.write_text(ZYGOTE)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(SCENARIO), *OVERRIDES],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._read() == "ready"

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def start(self, out: Path) -> int:
        self._send(str(out))
        return int(self._read())

    def reap(self) -> int:
        self._send("reap")
        return int(self._read())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _count(run: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{run / 'ledger.db'}?mode=ro", uri=True, timeout=0.1)
        try:
            return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet, or busy for a moment
        return 0


def _wait_for_entries(out: Path, pid: int, target: int, timeout: float = 300) -> None:
    """Until the child has committed ``target`` entries (or has stopped)."""
    start = time.monotonic()
    while alive(pid) and _count(out) < target:
        assert time.monotonic() - start < timeout, f"the run never reached {target} entries"
        time.sleep(0.002)


@pytest.mark.slow
def test_random_sigkills_leave_verifying_prefixes_of_the_uninterrupted_run(
    tmp_path: Path,
) -> None:
    zygote = Zygote(tmp_path)
    try:
        pid = zygote.start(tmp_path / "reference")
        while alive(pid):
            time.sleep(0.01)
        assert zygote.reap() == 0
        reference = _records(tmp_path / "reference")
        assert audit_ledger(tmp_path / "reference").entries == len(reference) > 50

        rng = random.Random(16)
        lengths = []
        for trial in range(TRIALS):
            out = tmp_path / f"kill-{trial:02d}"
            pid = zygote.start(out)
            # A random point of the run: once a random number of entries is
            # committed, after a random further delay (mid-append, mid-training...).
            _wait_for_entries(out, pid, rng.randrange(1, len(reference)))
            time.sleep(rng.uniform(0.0, 0.03))
            os.kill(pid, signal.SIGKILL)
            status = zygote.reap()
            assert status in (0, signal.SIGKILL), status  # finished first, or killed
            if not (out / "ledger.db").exists():
                lengths.append(0)
                continue
            got = _records(out)
            assert audit_ledger(out).entries == len(got)
            assert got == reference[: len(got)], f"trial {trial}: not a prefix"
            lengths.append(len(got))
    finally:
        zygote.close()
    cut = [n for n in lengths if 0 < n < len(reference)]
    assert len(cut) >= MID_RUN, f"too few kills landed mid-run: {lengths}"
    # Entries are committed a sealed block at a time (genesis, then one block per round:
    # 7 possible prefixes with none at all), so a kill can only leave one of those; it
    # must have left most of them.
    assert len(set(cut)) >= 5, f"the kills hit too few distinct points: {lengths}"
