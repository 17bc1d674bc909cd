"""Keys come from a keyring outside the run directory, derived per ledger and account."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from marketplace import KeyringError, Market, audit_ledger
from marketplace.keyring import TEST_MASTER_SECRET, Keyring, default_keyring_path, ledger_key_id
from tests.keyring import KEYRING, KEYRING_FILE
from tests.marketplace.conftest import populate


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac (independent of the cryptography package)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def test_hkdf_helper_matches_rfc5869_test_case_1() -> None:
    """RFC 5869 appendix A.1, so the derivation check below rests on a published vector."""
    okm = _hkdf_sha256(
        bytes.fromhex("0b" * 22),
        bytes.fromhex("000102030405060708090a0b0c"),
        bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        42,
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_account_keys_follow_the_documented_derivation() -> None:
    genesis = {"scenario_hash": "abc", "seed": 1, "run_id": "r1"}
    key_id = ledger_key_id(genesis)
    canonical = b'{"run_id":"r1","scenario_hash":"abc","seed":1}'
    assert key_id == hashlib.sha256(b"fedmarket/ledger-key-id/v1\x00" + canonical).digest()
    seed = _hkdf_sha256(
        TEST_MASTER_SECRET, b"fedmarket/keyring/v1", b"account-key\x00" + key_id + b"client-003", 32
    )
    public = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    assert KEYRING.signer(key_id, "client-003").public == public
    # Another account, ledger or master secret: another key.
    assert KEYRING.signer(key_id, "client-004").public != public
    assert KEYRING.signer(ledger_key_id({**genesis, "run_id": "r2"}), "client-003").public != public
    assert Keyring(bytes(32)).signer(key_id, "client-003").public != public


def test_keyring_file_is_created_private_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "config" / "fedmarket" / "keyring"
    created = Keyring.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = Keyring.load_or_create(path)
    assert again.id == created.id and len(again.id) == 16
    assert Keyring.load_or_create(tmp_path / "other").id != created.id  # OS randomness
    with pytest.raises(KeyringError, match="already exists"):
        Keyring.create(path)
    assert TEST_MASTER_SECRET.hex() not in repr(created) + repr(KEYRING)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("hello\n", "not a keyring file"),
        ("fedmarket-keyring v1\nzz\n", "not hex"),
        ("fedmarket-keyring v1\nabcd\n", "64 hex digits"),
    ],
)
def test_malformed_keyring_files_are_refused(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "keyring"
    path.write_text(text)
    with pytest.raises(KeyringError, match=reason):
        Keyring.load(path)
    with pytest.raises(KeyringError, match="no keyring file"):
        Keyring.load(tmp_path / "missing")


def test_default_location_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FEDMARKET_KEYRING", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_keyring_path() == tmp_path / "xdg" / "fedmarket" / "keyring"
    monkeypatch.setenv("FEDMARKET_KEYRING", str(tmp_path / "k"))
    assert default_keyring_path() == tmp_path / "k"
    assert Keyring.load(KEYRING_FILE).id == KEYRING.id  # the suite's file is the test keyring


def test_keyring_inside_the_run_directory_is_refused(tmp_path: Path) -> None:
    inside = Keyring.create(tmp_path / "run" / "keys" / "keyring")
    with pytest.raises(KeyringError, match="must not be stored in the run directory"):
        Market.create(tmp_path / "run", keyring=inside, seed=1, genesis={"scenario_hash": "x"})
    assert not (tmp_path / "run" / "ledger.db").exists()


def test_nothing_in_the_run_directory_holds_a_secret(tmp_path: Path) -> None:
    m = Market.create(tmp_path, keyring=KEYRING, seed=1, genesis={"scenario_hash": "x"})
    populate(m)
    key_id = ledger_key_id(m.entry(0).data)
    secrets = [TEST_MASTER_SECRET] + [
        KEYRING.signer(key_id, a)._sk[:32] for a in ("treasury", "client-000", "client-001")
    ]
    m.close()
    for name in os.listdir(tmp_path):
        blob = (tmp_path / name).read_bytes()
        for secret in secrets:
            assert secret not in blob and secret.hex().encode() not in blob, name


def test_open_without_keyring_cannot_append(tmp_path: Path) -> None:
    """Acceptance 1: the issue's `Market.open(path, readonly=False).transfer(...)`."""
    m = Market.create(tmp_path, keyring=KEYRING, seed=1, genesis={"scenario_hash": "x"})
    populate(m)
    m.close()
    rw = Market.open(tmp_path, readonly=False)
    size = rw.size
    with pytest.raises(KeyringError, match=r"opened without a keyring.*'client-003'"):
        rw.transfer("client-003", "client-000", 1)
    with pytest.raises(KeyringError, match="opened without a keyring"):
        rw.transfer("client-001", "client-000", 1)
    rw.close()
    assert audit_ledger(tmp_path).entries == size


def test_another_keyring_is_refused_at_open(tmp_path: Path) -> None:
    Market.create(tmp_path, keyring=KEYRING, seed=1, genesis={"scenario_hash": "x"}).close()
    with pytest.raises(KeyringError, match="does not hold the key registered for 'treasury'"):
        Market.open(tmp_path, readonly=False, keyring=Keyring(b"\x01" * 32))


def test_lazy_registration_costs_nothing_per_absent_account(tmp_path: Path) -> None:
    """Creating a ledger signs and stores genesis only; keys are derived when used."""
    m = Market.create(tmp_path, keyring=KEYRING, seed=1, genesis={"scenario_hash": "x"})
    assert m.size == 1 and list(m._signers) == ["treasury"]
    e = m.register_participant("client-099999", role="data_owner")
    assert e.key == m.public_key("client-099999") and e.nonce == 0
    assert m.mint("client-099999", 5, reason="grant").key is None  # key only on the first entry
    m.close()
