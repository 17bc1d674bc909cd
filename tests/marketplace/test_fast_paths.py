"""The append/audit fast paths change no byte and weaken no check.

* the head hash of a fixed history is pinned (recorded before the fast paths);
* both Ed25519 backends sign byte-identically and agree on verification;
* externally submitted transactions are still verified (bad ones refused,
  nothing appended), only the Market's own signatures skip re-verification;
* the chunked parallel audit names the first bad entry across chunk borders.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

import marketplace.audit as audit_mod
from marketplace import (
    TOKEN,
    LedgerIntegrityError,
    Market,
    SignatureError,
    SignedTransaction,
    audit_ledger,
    canonical_json,
)
from marketplace.entries import Entry
from marketplace.keys import Signer, verify_signature, verify_signature_raw
from tests.keyring import KEYRING

GOLDEN_SIZE = 169
# Recorded when entries became keyring-signed and ledger-bound (test keyring),
# with the genesis params that include vote_earn_min_stake; a later change of
# any of them changes the signed bytes of every ledger.
GOLDEN_HEAD = "6ec2b70a9e0e1fef25cab8dd886f5827623459b3344bbd2c5232abe1309feba4"
GOLDEN_ROOT = "cbca7963234d80ac4560e3ab0c97c98ed2492b35cf9f5f6c3e9dfcf281c5b673"
GOLDEN_CONTENT = "8e5032baecc1177f749225fab7cd5c071fa1760e4a32b647435c74fd5b05a8cb"


def _golden(path: Path) -> Market:
    t = [0.0]
    m = Market.create(
        path,
        keyring=KEYRING,
        seed=7,
        genesis={"scenario_hash": "golden", "params": {"platform_fee_bps": 300}},
        clock=lambda: t[0],
        block_size=16,
    )
    names = [f"client-{i:03d}" for i in range(6)] + ["buyer.x:1"]
    with m.batch():
        for n in names:
            m.register_participant(n, role="data_owner", meta={"note": 'é\u2028"q"', "x": 1.25})
            m.mint(n, 10 * TOKEN, reason="airdrop")
    rng = random.Random(3)
    for k in range(120):
        t[0] += 0.37
        a, b = rng.sample(names, 2)
        with m.batch():
            m.transfer(a, b, rng.randint(1, 1000), memo=f"m{k}\t\u00e9")
            if k % 10 == 0:
                m.stake(a, 5)
                m.record("round_started", {"round": k, "lr": 0.1 * k, "tags": ["a", None, True]})
    m.end_block()
    return m


def test_golden_head_hash_unchanged(tmp_path: Path) -> None:
    """Pinned bytes: head, root and content digest of a fixed history."""
    with _golden(tmp_path) as m:
        assert (m.size, m.head_hash, m.root()) == (GOLDEN_SIZE, GOLDEN_HEAD, GOLDEN_ROOT)
        assert m.content_digest == GOLDEN_CONTENT
        for e in m.entries():
            assert e.record() == e.encode().record
            assert Entry.compute_hash(e.prev_hash, e.body()) == e.hash
    report = audit_ledger(tmp_path, workers=2)
    assert report.head_hash == GOLDEN_HEAD and report.root == GOLDEN_ROOT
    assert report.content_digest == GOLDEN_CONTENT


def test_returned_entries_equal_stored(tmp_path: Path) -> None:
    with _golden(tmp_path) as m:
        e = m.transfer("client-000", "client-001", 3, memo="ü")
        assert m.entry(e.seq) == e
        assert e.hash == m.head_hash


@settings(max_examples=30, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300))
def test_backends_sign_byte_identically(seed: bytes, message: bytes) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    signer = Signer(seed)
    sig = signer.sign(message)
    assert sig == key.sign(message)  # Ed25519 is deterministic: same bytes from both backends
    assert Signer(seed, backend="cryptography").sign(message) == sig
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert signer.public_hex == public.hex()
    assert verify_signature_raw(public, sig, message)
    assert verify_signature(public.hex(), sig.hex(), message)
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    assert not verify_signature_raw(public, flipped, message)
    assert not verify_signature_raw(public, sig, message + b"x")
    other = Signer(bytes([seed[0] ^ 1]) + seed[1:])
    assert not verify_signature_raw(bytes.fromhex(other.public_hex), sig, message)


def test_verify_never_raises_on_junk() -> None:
    signer = Signer(b"\x01" * 32)
    sig = signer.sign(b"m").hex()
    assert verify_signature(signer.public_hex, sig, b"m")
    for public, signature in [
        ("zz", sig),
        (signer.public_hex, "zz"),
        (signer.public_hex[:-2], sig),
        (signer.public_hex, sig[:-2]),
        (signer.public_hex, sig + "00"),
        ("00" * 32, sig),
        ("ff" * 32, sig),
    ]:
        assert not verify_signature(public, signature, b"m")


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
        max_leaves=12,
    )
)
def test_canonical_json_equals_json_dumps(value: object) -> None:
    expected = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert canonical_json(value) == expected


def test_canonical_json_still_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_canonical_json_refuses_cycles_and_unencodable_values_and_recovers() -> None:
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError, match="Circular"):
        canonical_json({"a": [cyclic]})
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        canonical_json({"a": {1, 2}})
    # The shared encoder keeps no state from a failed call.
    assert canonical_json({"b": [1, 2.5], "a": "é"}) == '{"a":"é","b":[1,2.5]}'


def _two_accounts(tmp_path: Path) -> Market:
    m = Market.create(tmp_path, keyring=KEYRING, seed=42, genesis={"scenario_hash": "x"})
    m.register_participant("client-000", role="data_owner")
    m.register_participant("client-001", role="data_owner")
    m.mint("client-000", 100, reason="x")
    return m


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-2] + ("00" if s[-2:] != "00" else "01"),  # one byte changed
        lambda s: "00" * 64,
        lambda s: s[:-2],  # too short
        lambda s: "zz" * 64,  # not hex
        lambda s: "",
    ],
)
def test_external_bad_signature_refused_nothing_appended(tmp_path: Path, mangle: object) -> None:
    m = _two_accounts(tmp_path)
    good = m.sign("transfer", "client-000", {"to": "client-001", "amount": 10, "memo": ""})
    bad = SignedTransaction(good.tx, mangle(good.signature))  # type: ignore[operator]
    size, head = m.size, m.head_hash
    with pytest.raises(SignatureError):
        m.submit(bad)
    with pytest.raises(SignatureError), m.batch():
        m.submit(bad)
    assert (m.size, m.head_hash, m.balance("client-000")) == (size, head, 100)
    m.submit(good)  # the nonce was not consumed by the refused ones
    assert m.balance("client-001") == 10
    m.close()
    audit_ledger(tmp_path, workers=2)


def test_external_signature_over_other_fields_refused(tmp_path: Path) -> None:
    """A valid signature of a *different* transaction does not carry over."""
    m = _two_accounts(tmp_path)
    good = m.sign("transfer", "client-000", {"to": "client-001", "amount": 10, "memo": ""})
    tx = good.tx._replace(data={"to": "client-001", "amount": 99, "memo": ""})
    with pytest.raises(SignatureError):
        m.submit(SignedTransaction(tx, good.signature))
    assert m.balance("client-001") == 0
    m.close()


def _rechain_signature(db: Path, seqs: list[int]) -> None:
    """Replace the signature of entries ``seqs`` and re-hash the chain after them."""
    conn = sqlite3.connect(db, isolation_level=None)
    rows = conn.execute("SELECT seq, record FROM entries ORDER BY seq").fetchall()
    prev = None
    for seq, record in rows:
        e = Entry.from_record(record)
        if seq in seqs:
            e = e._replace(signature="11" * 64)
        if prev is not None:
            e = e._replace(prev_hash=prev)
        e = e._replace(hash=Entry.compute_hash(e.prev_hash, e.body()))
        conn.execute("UPDATE entries SET record = ? WHERE seq = ?", (e.record(), seq))
        prev = e.hash
    conn.execute("UPDATE head SET hash = ?", (prev,))
    conn.close()


@pytest.mark.parametrize(("workers", "in_flight"), [(1, 4), (2, 4), (2, 1), (3, 1)])
def test_chunked_parallel_audit_names_first_bad(
    tmp_path: Path, workers: int, in_flight: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three bad signatures in different chunks: the lowest is named, also when the
    audit waits on a chunk mid-way (``in_flight`` 1: at most one chunk per thread
    pending) and a later chunk may have finished first."""
    monkeypatch.setattr(audit_mod, "_CHUNK", 7)
    monkeypatch.setattr(audit_mod, "_IN_FLIGHT", in_flight)
    with _golden(tmp_path) as m:
        seqs = [e.seq for e in m.entries() if e.kind == "transfer"]
    _rechain_signature(tmp_path / "ledger.db", [seqs[40], seqs[9], seqs[25]])
    with pytest.raises(LedgerIntegrityError) as err:
        audit_ledger(tmp_path, workers=workers)
    assert err.value.seq == seqs[9] and "signature" in err.value.reason


def test_parallel_audit_verifies_in_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """workers=2 verifies every signature in the verifier threads (libsodium releases
    the GIL), none in the auditing thread, and reports what the inline audit does."""
    seen: list[str] = []

    def spy(public: bytes, sig: bytes, message: bytes) -> bool:
        seen.append(threading.current_thread().name)
        return verify_signature_raw(public, sig, message)

    with _golden(tmp_path) as m:
        size = m.size
    inline = audit_ledger(tmp_path)
    monkeypatch.setattr(audit_mod, "verify_signature_raw", spy)
    monkeypatch.setattr(audit_mod, "_CHUNK", 16)
    assert audit_ledger(tmp_path, workers=2) == inline
    assert len(seen) == size
    assert all(name.startswith("fedmarket-verify") for name in seen)


def test_parallel_audit_bad_signature_before_later_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad signature still pending in a worker beats a later error the parent finds."""
    monkeypatch.setattr(audit_mod, "_CHUNK", 5)
    with _golden(tmp_path) as m:
        seqs = [e.seq for e in m.entries() if e.kind == "transfer"]
    db = tmp_path / "ledger.db"
    _rechain_signature(db, [seqs[3]])
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DELETE FROM entries WHERE seq = ?", (seqs[3] + 2,))
    conn.close()
    with pytest.raises(LedgerIntegrityError) as err:
        audit_ledger(tmp_path, workers=2)
    assert err.value.seq == seqs[3] and "signature" in err.value.reason


def test_entries_and_transactions_are_immutable(tmp_path: Path) -> None:
    m = _two_accounts(tmp_path)
    entry = m.transfer("client-000", "client-001", 5)
    with pytest.raises(AttributeError):
        entry.hash = "00" * 32  # type: ignore[misc]
    with pytest.raises(AttributeError):
        entry.tx.nonce = 99  # type: ignore[misc]
    assert entry == m.entry(entry.seq)  # equal by value to the stored one
    m.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_signature_beats_a_later_check_of_the_same_entry(
    tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry whose signature is bad and whose hook also fails is reported for its
    signature with any number of verifier threads (the signature is checked first)."""
    monkeypatch.setattr(audit_mod, "_CHUNK", 5)
    with _golden(tmp_path) as m:
        target = [e for e in m.entries() if e.kind == "transfer"][7]
    _rechain_signature(tmp_path / "ledger.db", [target.seq])

    def hook(entry: Entry, state: object) -> None:
        if entry.seq == target.seq:
            raise ValueError("the hook refuses it too")

    with pytest.raises(LedgerIntegrityError) as err:
        audit_ledger(tmp_path, workers=workers, checks={"transfer": [hook]})
    assert err.value.seq == target.seq
    assert err.value.reason == f"bad signature by {target.sender}"
