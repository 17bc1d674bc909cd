"""``--engine deployment`` end to end: a real SuperLink and 3 real SuperNodes on
127.0.0.1, a reduced quickstart with a label flipper, the ledger verified, the
same ledger as the in-process loop, each contribution signed on its node with its
account's key, and no process left, checked by pid."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import pytest
from nacl.signing import VerifyKey
from typer.testing import CliRunner

from marketplace.entries import Entry
from simulation.cli.main import app
from tests.simulation.test_flower_processes import QUICKSTART, Run, assert_nothing_survives

pytestmark = pytest.mark.slow

SMALL = [
    "--set",
    "clients.count=3",
    "--set",
    "rounds=2",
    "--set",
    "training.epochs=1",
    "--set",
    "population=[{group: flippers, count: 1, behaviour: label_flip, params: {fraction: 1.0}}]",
]


def run_to_the_end(run: Run, timeout: float = 900.0) -> set[str]:
    """Every command line seen below the driver until it exits."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while run.proc.poll() is None:
        seen.update(run.watch())
        assert time.monotonic() < deadline, run.output()[-3000:]
        time.sleep(0.1)
    return seen


def assert_contributions_signed_by_their_accounts(run_dir: Path) -> None:
    """Every contribution verifies, with PyNaCl, under the key its account registered."""
    entries = [Entry.from_record(r) for (r,) in _records(run_dir)]
    keys = {e.sender: e.key for e in entries if e.kind == "register"}
    contributions = [e for e in entries if e.kind == "contribution"]
    assert {e.sender for e in contributions} == {"client-000", "client-001", "client-002"}
    for e in contributions:
        assert keys[e.sender] is not None
        VerifyKey(bytes.fromhex(keys[e.sender])).verify(  # raises if it does not verify
            e.tx.signing_bytes(), bytes.fromhex(e.signature)
        )
    assert not [e for e in entries if e.kind == "contribution_rejected"]


def _records(run_dir: Path) -> list[tuple[str]]:
    conn = sqlite3.connect(run_dir / "ledger.db")
    try:
        return conn.execute("SELECT record FROM entries ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_three_supernodes_sign_the_same_ledger_as_the_inprocess_loop(tmp_path: Path) -> None:
    out = tmp_path / "deployment"
    run = Run([str(QUICKSTART), "--out", str(out), "--engine", "deployment", *SMALL])
    try:
        commands = run_to_the_end(run)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert run.proc.returncode == 0, run.output()[-3000:]

    # Real processes: a SuperLink without the simulation runtime, three SuperNodes
    # (each its own partition and ClientAppIo port), ClientApps launched by them.
    own = [c for c in commands if "engine/watchdog.py" not in c]
    links = [c for c in own if "flower-superlink" in c]
    assert links and all("--simulation" not in c for c in links)
    assert all("--disable-runtime-dependency-installation" in c for c in links)
    nodes = [c for c in own if "bin/flower-supernode" in c]
    assert sorted(int(re.findall(r"partition-id=(\d+)", c)[0]) for c in nodes) == [0, 1, 2]
    assert all("num-partitions=3" in c and "--insecure" in c for c in nodes)
    assert all("keyring-path=" in c for c in nodes)  # each signs with its keyring file
    assert len({re.findall(r"--port=(\d+)", c)[0] for c in nodes}) == 3
    assert any("flwr-clientapp" in c for c in own)

    verify = CliRunner().invoke(app, ["ledger", "verify", str(out)])
    assert verify.exit_code == 0, verify.output
    assert_contributions_signed_by_their_accounts(out)
    ip = tmp_path / "inprocess"
    res = CliRunner().invoke(
        app, ["run", str(QUICKSTART), "--out", str(ip), "--engine", "inprocess", *SMALL]
    )
    assert res.exit_code == 0, res.output
    dep, ref = (json.loads((d / "manifest.json").read_text()) for d in (out, ip))
    # Same scenario, seed and keyring: every entry equal, so both digests are.
    assert dep["ledger"]["content_digest"] == ref["ledger"]["content_digest"]
    assert dep["ledger_head"] == ref["ledger_head"]
    assert dep["final"] == ref["final"]
    assert_nothing_survives(run)
