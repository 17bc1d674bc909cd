"""Durability: SIGKILLed writers and concurrent writers leave a verifying ledger.

Appends are committed at each sealed block, at ``flush()``, at the end of a
``batch()`` and at ``close()``: an entry acknowledged after one of those
survives a SIGKILL; the open block may be lost, never half-written."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marketplace import Market, audit_ledger
from tests.keyring import KEYRING

REPO = Path(__file__).resolve().parents[2]

WRITER = r"""
import sys
import time
from pathlib import Path
from marketplace import Keyring, Market

KEYRING = Keyring.for_tests()
path, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if (path / "ledger.db").exists():
    market = Market.open(path, readonly=False, keyring=KEYRING)
else:
    genesis = {"scenario_hash": "kill"}
    market = Market.create(path, keyring=KEYRING, seed=5, genesis=genesis, block_size=16)
if name not in market.state.accounts:
    market.register_participant(name, role="data_owner")
market.flush()
print("ready", flush=True)
i = 0
while count < 0 or i < count:
    if i % 7 == 3:
        with market.batch():
            entries = [market.mint(name, 1 + j, reason="batch") for j in range(5)]
        for e in entries:
            print(e.seq, e.hash, flush=True)
    else:
        e = market.mint(name, 1, reason="single")
        market.flush()  # acknowledged once committed (a sealed block commits too)
        print(e.seq, e.hash, flush=True)
    i += 1
    if count < 0:
        time.sleep(0.002)  # spread the kill points over a few hundred entries
market.close()
"""


def _writer(tmp: Path, name: str, count: int) -> subprocess.Popen[str]:
    script = tmp / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp / "run"), name, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_sigkill_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(1234)
    committed: dict[int, str] = {}
    for trial in range(22):
        proc = _writer(tmp_path, f"client-{trial % 3:03d}", -1)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and len(parts[1]) == 64:  # the kill may cut the last line
                committed[int(parts[0])] = parts[1]
        report = audit_ledger(tmp_path / "run")  # verifies after every kill
        assert report.entries > max(committed, default=0)
    market = Market.open(tmp_path / "run")
    stored = {e.seq: e.hash for e in market.entries()}
    market.close()
    assert len(committed) > 50
    for seq, digest in committed.items():
        assert stored[seq] == digest, f"entry #{seq} was acknowledged but lost"


def test_two_writer_processes_serialize(tmp_path: Path) -> None:
    market = Market.create(
        tmp_path / "run", keyring=KEYRING, seed=5, genesis={"scenario_hash": "two"}
    )
    market.close()
    procs = [_writer(tmp_path, f"client-{i:03d}", 40) for i in range(2)]
    outputs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    seqs = [int(line.split()[0]) for out in outputs for line in out.splitlines()[1:]]
    assert len(seqs) == len(set(seqs))
    report = audit_ledger(tmp_path / "run")
    assert report.entries == 1 + 2 + len(seqs)


@pytest.mark.parametrize("block_size", [None, 3])
def test_killed_open_block_is_accepted(tmp_path: Path, block_size: int | None) -> None:
    m = Market.create(
        tmp_path, keyring=KEYRING, seed=1, genesis={"scenario_hash": "o"}, block_size=block_size
    )
    m.register_participant("a", role="data_owner")
    m.mint("a", 1, reason="x")
    m.mint("a", 1, reason="y")
    m.close()  # no end_block: the final block stays open
    report = audit_ledger(tmp_path)
    assert report.open_block_entries >= 1


CREATOR = r"""
import os
import signal
import sys
from pathlib import Path

import marketplace.ledger as ledger
from marketplace import Keyring

path, kill_at = Path(sys.argv[1]), int(sys.argv[2])
statements = 0


def count(sql: str) -> None:
    global statements
    if statements == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    statements += 1


real_connect, real_publish = ledger.connect, ledger._publish


def connect(db, *, readonly):
    if kill_at == statements:  # before the file exists
        os.kill(os.getpid(), signal.SIGKILL)
    conn = real_connect(db, readonly=readonly)
    conn.set_trace_callback(count)
    return conn


def publish(staging, db):
    count("publish")  # a kill point just before the staging file is linked
    real_publish(staging, db)
    count("published")  # and just after, before the ledger is reopened


ledger.connect, ledger._publish = connect, publish
keyring = Keyring.for_tests()
ledger.Market.create(path, keyring=keyring, seed=3, genesis={"scenario_hash": "c"}).close()
print("created", statements, flush=True)
"""


def test_killed_while_creating_leaves_no_ledger_or_one_that_verifies(tmp_path: Path) -> None:
    """Kill the creator before each of its SQL statements (and around the final
    link): ``ledger.db`` is either absent, so the run can simply be redone, or a
    ledger holding its genesis entry that verifies."""
    script = tmp_path / "creator.py"
    script.write_text(CREATOR)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    outcomes: list[str] = []
    for kill_at in range(200):
        run = tmp_path / f"run{kill_at}"
        proc = subprocess.run(
            [sys.executable, str(script), str(run), str(kill_at)],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode == 0:
            assert proc.stdout.startswith("created")
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        if (run / "ledger.db").exists():
            assert audit_ledger(run).entries == 1
            outcomes.append("ledger")
        else:
            outcomes.append("none")
            # The killed creator's staging file is cleaned up and creation succeeds.
            assert list(run.glob(".ledger.db.*.creating")) or kill_at == 0
            Market.create(run, keyring=KEYRING, seed=3, genesis={"scenario_hash": "c"}).close()
            assert not list(run.glob(".ledger.db.*"))
            assert audit_ledger(run).entries == 1
    else:
        pytest.fail("the creator never finished")
    # Kill points fell both before and after the ledger was published.
    assert outcomes[0] == "none" and outcomes[-1] == "ledger"
    assert outcomes == sorted(outcomes, key=lambda o: o == "ledger")


# A writer killed inside a write transaction while the ledger is in rollback-journal
# mode (it leaves WAL mode when it closes; the next writer switches it back) leaves a
# hot journal. Read-only opens then fail until a writer rolls it back; seen once as
# "attempt to write a readonly database" in the random-SIGKILL run test.
HOT_JOURNAL = r"""
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size=1")  # spill to the file before commit: the journal is hot
conn.execute("BEGIN")
conn.executemany("INSERT INTO entries (seq, kind, record) VALUES (?, 'junk', ?)",
                 [(10**6 + i, "x" * 2000) for i in range(2000)])
os._exit(9)
"""


def test_a_writer_killed_mid_transaction_leaves_a_ledger_that_verifies(tmp_path: Path) -> None:
    import sqlite3

    with Market.create(tmp_path, keyring=KEYRING, seed=5, genesis={"scenario_hash": "h"}) as m:
        m.register_participant("alice", role="data_owner")
        for i in range(20):
            m.mint("alice", 1 + i, reason="r")
        head, count = m.head_hash, len(m.entries())
    db = tmp_path / "ledger.db"
    script = tmp_path / "hot.py"
    script.write_text(HOT_JOURNAL)
    subprocess.run([sys.executable, str(script), str(db)], check=False, timeout=120)
    assert (tmp_path / "ledger.db-journal").exists()
    raw = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        raw.execute("SELECT count(*) FROM entries").fetchone()  # the premise
    raw.close()
    report = audit_ledger(tmp_path)
    assert report.entries == count
    with Market.open(tmp_path) as m:
        assert m.head_hash == head and len(m.entries()) == count
