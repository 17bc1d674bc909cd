"""Tampering with the stored ledger is detected, naming the first bad entry."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from marketplace import (
    Entry,
    LedgerIntegrityError,
    Market,
    audit_ledger,
)
from marketplace.keyring import ledger_key_id
from marketplace.keys import Signer
from tests.keyring import KEYRING
from tests.marketplace.conftest import populate


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    m = Market.create(tmp_path, keyring=KEYRING, seed=11, genesis={"scenario_hash": "t"})
    populate(m)
    m.close()
    audit_ledger(tmp_path)
    return tmp_path


def _db(run_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(run_dir / "ledger.db", isolation_level=None)


def _record(conn: sqlite3.Connection, seq: int) -> dict[str, object]:
    row = conn.execute("SELECT record FROM entries WHERE seq = ?", (seq,)).fetchone()
    return dict(json.loads(row[0]))


def _write(conn: sqlite3.Connection, seq: int, d: dict[str, object]) -> None:
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    conn.execute("UPDATE entries SET record = ? WHERE seq = ?", (text, seq))


def _rechain(conn: sqlite3.Connection, start: int, mutate: Callable[[Entry], Entry]) -> None:
    """Rewrite entry ``start`` with ``mutate`` and recompute every later hash,
    as a careful forger would (the head row too)."""
    prev = Entry.from_record(
        conn.execute("SELECT record FROM entries WHERE seq = ?", (start - 1,)).fetchone()[0]
    ).hash
    rows = conn.execute(
        "SELECT seq, record FROM entries WHERE seq >= ? ORDER BY seq", (start,)
    ).fetchall()
    for seq, record in rows:
        e = Entry.from_record(record)
        if seq == start:
            e = mutate(e)
        e = e._replace(prev_hash=prev)
        e = e._replace(hash=Entry.compute_hash(prev, e.body()))
        conn.execute("UPDATE entries SET record = ? WHERE seq = ?", (e.record(), seq))
        prev = e.hash
    conn.execute("UPDATE head SET hash = ? WHERE id = 0", (prev,))


def true_key(conn: sqlite3.Connection, account: str) -> Signer:
    """``account``'s real key, from the keyring (which a forger does not hold)."""
    genesis = Entry.from_record(
        conn.execute("SELECT record FROM entries WHERE seq = 0").fetchone()[0]
    )
    return KEYRING.signer(ledger_key_id(genesis.data), account)


def _first_bad(run_dir: Path) -> LedgerIntegrityError:
    with pytest.raises(LedgerIntegrityError) as err:
        audit_ledger(run_dir)
    return err.value


def _find(conn: sqlite3.Connection, kind: str) -> int:
    return int(conn.execute("SELECT MIN(seq) FROM entries WHERE kind = ?", (kind,)).fetchone()[0])


def test_edit_body(run_dir: Path) -> None:
    conn = _db(run_dir)
    seq = _find(conn, "transfer")
    d = _record(conn, seq)
    data = dict(d["data"])  # type: ignore[call-overload]
    data["amount"] = 1
    d["data"] = data
    _write(conn, seq, d)
    err = _first_bad(run_dir)
    assert err.seq == seq and "hash" in err.reason


def test_edit_hash(run_dir: Path) -> None:
    conn = _db(run_dir)
    d = _record(conn, 4)
    d["hash"] = "ff" * 32
    _write(conn, 4, d)
    assert _first_bad(run_dir).seq == 4


def test_edit_signature(run_dir: Path) -> None:
    conn = _db(run_dir)
    seq = _find(conn, "transfer")
    _rechain(conn, seq, lambda e: e._replace(signature="00" * 64))
    err = _first_bad(run_dir)
    assert err.seq == seq and "signature" in err.reason


def test_edit_body_and_rechain(run_dir: Path) -> None:
    """A forger who recomputes every hash is still caught by the signature."""
    conn = _db(run_dir)
    seq = _find(conn, "transfer")
    _rechain(conn, seq, lambda e: e._replace(data={**e.data, "amount": 5}))
    err = _first_bad(run_dir)
    assert err.seq == seq and "signature" in err.reason


def test_resigned_overdraft_is_caught_by_balance_rederivation(run_dir: Path) -> None:
    """Even with the sender's true key, an overdraft written into the file fails the replay."""
    conn = _db(run_dir)
    seq = _find(conn, "transfer")

    def forge(e: Entry) -> Entry:
        tx = e.tx._replace(data={**e.data, "amount": 10**15})
        sig = true_key(conn, e.sender).sign(tx.signing_bytes()).hex()
        return e._replace(data=tx.data, signature=sig)

    _rechain(conn, seq, forge)
    err = _first_bad(run_dir)
    assert err.seq == seq and "needs" in err.reason


def test_checkpoint_root_forged(run_dir: Path) -> None:
    conn = _db(run_dir)
    seq = _find(conn, "checkpoint")

    def forge(e: Entry) -> Entry:
        tx = e.tx._replace(data={**e.data, "root": "11" * 32})
        sig = true_key(conn, "treasury").sign(tx.signing_bytes()).hex()
        return e._replace(data=tx.data, signature=sig)

    _rechain(conn, seq, forge)
    err = _first_bad(run_dir)
    assert err.seq == seq and "Merkle" in err.reason


def test_delete_row(run_dir: Path) -> None:
    conn = _db(run_dir)
    conn.execute("DELETE FROM entries WHERE seq = 7")
    err = _first_bad(run_dir)
    assert err.seq == 7 and "missing" in err.reason


def test_reorder_rows(run_dir: Path) -> None:
    conn = _db(run_dir)
    a, b = _record(conn, 8), _record(conn, 9)
    _write(conn, 8, b)
    _write(conn, 9, a)
    err = _first_bad(run_dir)
    assert err.seq == 8 and "order" in err.reason


def test_renumbered_rows(run_dir: Path) -> None:
    conn = _db(run_dir)
    conn.execute("UPDATE entries SET seq = 1000 WHERE seq = 5")
    conn.execute("UPDATE entries SET seq = 5 WHERE seq = 6")
    conn.execute("UPDATE entries SET seq = 6 WHERE seq = 1000")
    assert _first_bad(run_dir).seq == 5


def test_truncate(run_dir: Path) -> None:
    conn = _db(run_dir)
    size = int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
    conn.execute("DELETE FROM entries WHERE seq >= ?", (size - 3,))
    err = _first_bad(run_dir)
    assert err.seq == size - 3 and "truncated" in err.reason


def test_truncate_everything(run_dir: Path) -> None:
    conn = _db(run_dir)
    conn.execute("DELETE FROM entries")
    assert _first_bad(run_dir).seq == 0


def test_non_canonical_record(run_dir: Path) -> None:
    conn = _db(run_dir)
    d = _record(conn, 3)
    conn.execute("UPDATE entries SET record = ? WHERE seq = 3", (json.dumps(d, indent=1),))
    err = _first_bad(run_dir)
    assert err.seq == 3 and "canonical" in err.reason


def test_garbage_record(run_dir: Path) -> None:
    conn = _db(run_dir)
    conn.execute("UPDATE entries SET record = 'not json' WHERE seq = 2")
    err = _first_bad(run_dir)
    assert err.seq == 2 and "malformed" in err.reason


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_audit_names_first_bad_signature(run_dir: Path, workers: int) -> None:
    conn = _db(run_dir)
    seq = _find(conn, "transfer")
    _rechain(conn, seq, lambda e: e._replace(signature="00" * 64))
    with pytest.raises(LedgerIntegrityError) as err:
        audit_ledger(run_dir, workers=workers)
    assert err.value.seq == seq and "signature" in err.value.reason


def test_parallel_audit_ok(run_dir: Path) -> None:
    assert audit_ledger(run_dir, workers=2) == audit_ledger(run_dir)


@pytest.mark.parametrize(
    ("field", "value"),
    [("nonce", 1.0), ("time", 3), ("kind", 7), ("key", {"hash": "x"}), ("extra", 1)],
)
def test_canonical_record_of_the_wrong_shape_is_malformed(
    run_dir: Path, field: str, value: object
) -> None:
    """A record in canonical form, hash recomputed over its own body, but with a
    field of the wrong JSON type (or one too many) is refused at that entry: the
    audit re-encodes the fields it parsed (``1.0`` as a nonce is read as 1), so the
    body it hashes is not the one the forger hashed."""
    conn = _db(run_dir)
    seq = _find(conn, "transfer")
    d = _record(conn, seq)
    d[field] = value
    d.pop("hash")
    prev = bytes.fromhex(str(d["prev_hash"]))
    body = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    d["hash"] = hashlib.sha256(prev + body.encode()).hexdigest()
    _write(conn, seq, d)
    err = _first_bad(run_dir)
    assert err.seq == seq and ("hash does not match" in err.reason or "kind column" in err.reason)
