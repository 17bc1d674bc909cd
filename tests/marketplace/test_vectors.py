"""Published test vectors: canonical JSON, one entry end to end, signed checkpoints.

``tests/fixtures/vectors/ledger_vectors.json`` was made by the script beside
it, which imports nothing from ``marketplace`` (standard-library ``json``,
``hashlib`` and pyca/cryptography, and the layouts written out from their
specification), so another implementation can check itself against it and
this one is checked against an independent one. The signed-note vector is
Go's ``golang.org/x/mod/sumdb/note`` test vector.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from marketplace.canonical import canonical_json, sha256_hex
from marketplace.checkpoint import (
    Checkpoint,
    NoteSignature,
    SignedCheckpoint,
    key_id,
    origin_of,
    parse_verifier_key,
    verifier_key,
)
from marketplace.entries import Entry, Transaction, encode_entry
from marketplace.errors import ProofError
from marketplace.keys import Signer
from marketplace.merkle import leaf_hash

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "vectors" / "ledger_vectors.json").read_text()
)


@pytest.mark.parametrize("case", VECTORS["canonical"], ids=lambda c: c["name"])
def test_canonical_vectors(case: dict[str, Any]) -> None:
    text = canonical_json(case["input"])
    assert text == case["canonical"]
    assert sha256_hex(text.encode("utf-8")) == case["sha256"]


def test_canonical_by_hand() -> None:
    """Two vectors written out by hand (not by any encoder)."""
    assert canonical_json({"b": [1.0, 1], "a": "é\n"}) == '{"a":"é\\n","b":[1.0,1]}'
    assert canonical_json([1e16, 1e-07, -0.0]) == "[1e+16,1e-07,-0.0]"


def test_entry_vector() -> None:
    v = VECTORS["entry"]
    t = v["transaction"]
    tx = Transaction(
        t["kind"], t["sender"], t["nonce"], t["time"], t["data"], t["ledger"], t["key"]
    )
    signer = Signer(bytes.fromhex(v["signer_seed"]))
    assert signer.public_hex == v["signer_public_key"]
    assert tx.signing_bytes().decode() == v["signing_bytes"]
    assert signer.sign(tx.signing_bytes()).hex() == v["signature"]
    enc = encode_entry(v["seq"], v["block"], tx, v["signature"], v["prev_hash"])
    assert enc.signing.decode() == v["signing_bytes"]
    assert enc.body.decode() == v["body"]
    assert enc.hash == v["hash"] and enc.record == v["record"] and enc.content == v["content"]
    assert leaf_hash(enc.record.encode()).hex() == v["merkle_leaf"]
    e = Entry.build(
        seq=v["seq"], block=v["block"], tx=tx, signature=v["signature"], prev_hash=v["prev_hash"]
    )
    assert e.record() == v["record"] and e.content() == v["content"]


def test_checkpoint_vector() -> None:
    v = VECTORS["checkpoint"]
    signer = Signer(bytes.fromhex(v["signer_seed"]))
    origin = origin_of(v["ledger_id"])
    cp = Checkpoint(origin, v["tree_size"], bytes.fromhex(v["root"]))
    note = SignedCheckpoint.sign(cp, origin, signer.public, signer.sign)
    assert note.text() == v["note"]
    assert verifier_key(origin, signer.public) == v["verifier_key"]
    parsed = SignedCheckpoint.parse(v["note"])
    assert parsed == note
    name, public = parse_verifier_key(v["verifier_key"])
    parsed.verify(name, public)
    tampered = SignedCheckpoint.parse(v["note"].replace("\n42\n", "\n43\n"))
    with pytest.raises(ProofError, match="does not verify"):
        tampered.verify(name, public)
    with pytest.raises(ProofError, match="not signed by"):
        parsed.verify("someone-else", public)


def test_go_signed_note_vector() -> None:
    """Our key ids, verifier keys and signature lines equal Go's byte for byte."""
    v = VECTORS["go_signed_note"]
    name, public = parse_verifier_key(v["verifier_key"])
    assert name == "PeterNeumann" and key_id(name, public).hex() == "c74f20a3"
    assert verifier_key(name, public) == v["verifier_key"]
    raw = base64.b64decode(v["signer_key"].split("+", 4)[4])  # the key may hold "+"
    assert raw[0] == 1  # the Ed25519 algorithm byte
    signer = Signer(raw[1:])
    assert signer.public == public
    line = NoteSignature(name, key_id(name, public), signer.sign(v["text"].encode())).line()
    assert line == v["signature_line"]


@pytest.mark.parametrize(
    "bad",
    [
        "no blank line\n",
        "origin\n1\nAAAA\n\n— origin AAAA\n",  # root too short
        "origin\n01\n" + base64.b64encode(bytes(32)).decode() + "\n\n— o x\n",  # leading zero
        "origin\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n",  # no signature
        "origin\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n- origin AAAA\n",
    ],
)
def test_malformed_checkpoints_are_refused(bad: str) -> None:
    with pytest.raises(ProofError):
        SignedCheckpoint.parse(bad)
