"""Transactions and ledger entries: immutable records with one canonical encoding.

A :class:`Transaction` is what a sender signs: ``kind``, ``sender``, the
per-signer counter ``nonce``, simulated ``time``, ``data``, the ``ledger`` id
it is meant for (the genesis entry's hash; ``None`` only in genesis itself)
and, on the sender's first entry only, its public ``key``. An :class:`Entry`
is a transaction once the ledger accepted it: it adds the sequence number, the
block, the signature and the previous entry's hash.

Encodings (all canonical JSON, see :mod:`marketplace.canonical`):

* signed message: ``canonical({data, key, kind, ledger, nonce, sender, time})``;
* body: every entry field but ``hash``; ``hash = SHA-256(prev_hash || body)``;
* record: ``canonical(body + {"hash": ...})``, what is stored and what the
  RFC 6962 Merkle leaf covers;
* content: ``canonical({block, data, kind, nonce, sender, seq, time})`` with
  the keyring-dependent data fields of a kind left out (a checkpoint's root
  and note signature, see :data:`KEYED_DATA`). It is identical under any
  keyring; the content digest of a ledger hashes these (``content_digest``).

:func:`encode_entry` is the only place that lays these texts out (the append
and audit hot paths both call it); ``tests/marketplace/test_encoding.py``
checks it equals ``canonical_json`` of the dicts byte for byte and
``tests/fixtures/entries/`` holds vectors another implementation can check.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from marketplace.canonical import JSON, canonical_bytes, canonical_json

__all__ = [
    "CONTENT_DIGEST_EMPTY",
    "GENESIS_PREV",
    "KEYED_DATA",
    "Encoded",
    "Entry",
    "Prepared",
    "SignedTransaction",
    "Transaction",
    "content_data",
    "encode_entry",
    "finish_entry",
    "json_float",
    "prepare_entry",
    "signing_message",
]

GENESIS_PREV = "00" * 32

KEYED_DATA: Mapping[str, frozenset[str]] = {"checkpoint": frozenset({"root", "note_signature"})}
"""Data fields that depend on the keyring (via signatures), left out of the content."""

CONTENT_DIGEST_EMPTY = hashlib.sha256(b"").hexdigest()
"""Content digest of no entries."""


# Transaction and Entry are NamedTuples rather than frozen dataclasses: just as
# immutable, and about four times cheaper to create (a frozen dataclass sets
# each field through object.__setattr__), which matters because every append
# and every audited entry creates one of each. Copy with ``_replace``.


class Transaction(NamedTuple):
    """What a sender signs. ``time`` is the simulated clock, never wall time."""

    kind: str
    sender: str
    nonce: int
    time: float
    data: Mapping[str, JSON]
    ledger: str | None = None
    """Hex id of the ledger this is signed for (its genesis hash); ``None`` in genesis."""
    key: str | None = None
    """The sender's hex Ed25519 public key, on its first (registering) entry only."""

    def signing_bytes(self) -> bytes:
        """The exact bytes covered by the sender's Ed25519 signature."""
        return canonical_bytes({**_core(self, self.data), "key": self.key, "ledger": self.ledger})

    def describe(self) -> str:
        """Short identification used in error messages: ``transfer by client-001 #3``."""
        return f"{self.kind} by {self.sender} #{self.nonce}"


@dataclass(frozen=True, slots=True)
class SignedTransaction:
    """A transaction and its hex signature, as submitted by an outside signer."""

    tx: Transaction
    signature: str


class Entry(NamedTuple):
    """One accepted, hash-chained ledger entry."""

    seq: int
    block: int
    kind: str
    sender: str
    nonce: int
    time: float
    data: Mapping[str, JSON]
    ledger: str | None
    key: str | None
    signature: str
    prev_hash: str
    hash: str

    @property
    def tx(self) -> Transaction:
        """The signed transaction inside this entry."""
        return Transaction(
            self.kind, self.sender, self.nonce, self.time, self.data, self.ledger, self.key
        )

    def body(self) -> dict[str, Any]:
        """Every field except ``hash``: what the hash covers."""
        return {
            **_core(self, self.data),
            "seq": self.seq,
            "block": self.block,
            "ledger": self.ledger,
            "key": self.key,
            "signature": self.signature,
            "prev_hash": self.prev_hash,
        }

    def record(self) -> str:
        """Canonical JSON of the whole entry: what is stored and Merkle-hashed."""
        body = self.body()
        body["hash"] = self.hash
        return canonical_json(body)

    def content(self) -> str:
        """Canonical JSON of the keyring-independent content (see the module doc)."""
        data = content_data(self.kind, self.data)
        return canonical_json({**_core(self, data), "seq": self.seq, "block": self.block})

    @staticmethod
    def compute_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
        """``SHA-256(prev_hash bytes || canonical(body))`` as hex."""
        return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_bytes(body)).hexdigest()

    @classmethod
    def build(
        cls, *, seq: int, block: int, tx: Transaction, signature: str, prev_hash: str
    ) -> Entry:
        """Create an entry and compute its hash."""
        fields = (seq, block, tx.kind, tx.sender, tx.nonce, tx.time, tx.data, tx.ledger, tx.key)
        partial = cls(*fields, signature, prev_hash, "")
        return cls(*fields, signature, prev_hash, cls.compute_hash(prev_hash, partial.body()))

    def encode(self, data_json: str | None = None) -> Encoded:
        """All encodings of this entry with a single JSON encoding of ``data``
        (equal to ``signing_bytes()``, ``canonical(body())``, ``record()`` and
        ``content()`` when the stored ``hash`` is right; the record and
        ``hash`` returned carry the hash recomputed from the body)."""
        return encode_entry(
            self.seq, self.block, self.tx, self.signature, self.prev_hash, data_json
        )

    @classmethod
    def from_record(cls, record: str) -> Entry:
        """Parse a stored record; raises ValueError/KeyError/TypeError when malformed."""
        d = json.loads(record)
        if not isinstance(d, dict):
            raise ValueError("record is not a JSON object")
        data = d["data"]
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
        ledger, key = d["ledger"], d["key"]
        return cls(
            int(d["seq"]),
            int(d["block"]),
            str(d["kind"]),
            str(d["sender"]),
            int(d["nonce"]),
            float(d["time"]),
            data,
            None if ledger is None else str(ledger),
            None if key is None else str(key),
            str(d["signature"]),
            str(d["prev_hash"]),
            str(d["hash"]),
        )


def _core(t: Transaction | Entry, data: Mapping[str, JSON]) -> dict[str, Any]:
    """The fields every encoding shares (canonical JSON sorts the keys)."""
    return {"kind": t.kind, "sender": t.sender, "nonce": t.nonce, "time": t.time, "data": data}


class Encoded(NamedTuple):
    """The canonical encodings of an entry: signed message, hashed body, stored
    record, content record (all text but the two byte strings that are hashed
    or signed), and the entry hash. (A NamedTuple for the reason given above:
    every append and every audited entry makes one.)"""

    signing: bytes
    body: bytes
    record: str
    content: str
    hash: str


def content_data(kind: str, data: Mapping[str, JSON]) -> Mapping[str, JSON]:
    """``data`` without the fields of :data:`KEYED_DATA` for ``kind``."""
    keyed = KEYED_DATA.get(kind)
    if keyed is None:
        return data
    return {k: v for k, v in data.items() if k not in keyed}


@lru_cache(maxsize=1 << 17)
def _jstr(value: str) -> str:
    """A JSON string literal (kinds and account ids repeat: cached)."""
    return canonical_json(value)


def json_float(value: float) -> str:
    """JSON number for a finite float, as ``json.dumps`` writes it."""
    if not math.isfinite(value):
        raise ValueError(f"time must be finite, got {value!r}")
    return float.__repr__(float(value))


_sha256 = hashlib.sha256


class Prepared(NamedTuple):
    """The JSON pieces of a transaction every encoding of its entry shares, and the
    message its sender signs: computed once per append (the signature needs the
    message before the entry's other encodings can be laid out)."""

    data: str
    kind: str
    sender: str
    nonce: int
    time: str
    ledger: str
    key: str
    signing: bytes
    content_data: str


def prepare_entry(tx: Transaction, data_json: str | None = None) -> Prepared:
    """The shared pieces of ``tx``'s encodings and its signed message (see
    :func:`encode_entry`; ``data_json`` is ``canonical_json(tx.data)`` if known)."""
    dj = canonical_json(tx.data) if data_json is None else data_json
    kind, sender, time = _jstr(tx.kind), _jstr(tx.sender), json_float(tx.time)
    ledger = "null" if tx.ledger is None else _jstr(tx.ledger)  # one id per ledger: cached
    key = "null" if tx.key is None else canonical_json(tx.key)
    nonce = tx.nonce
    signing = (
        f'{{"data":{dj},"key":{key},"kind":{kind},"ledger":{ledger},'
        f'"nonce":{nonce},"sender":{sender},"time":{time}}}'
    ).encode()
    cdj = dj if tx.kind not in KEYED_DATA else canonical_json(content_data(tx.kind, tx.data))
    return Prepared(dj, kind, sender, nonce, time, ledger, key, signing, cdj)


def finish_entry(p: Prepared, seq: int, block: int, signature: str, prev_hash: str) -> Encoded:
    """Lay out the hashed body, the record and the content of an entry from its
    prepared pieces and its signature (see :func:`encode_entry`)."""
    head = f'{{"block":{block},"data":{p.data}'
    tail = (
        f',"key":{p.key},"kind":{p.kind},"ledger":{p.ledger},"nonce":{p.nonce},'
        f'"prev_hash":{canonical_json(prev_hash)},"sender":{p.sender},"seq":{seq},'
        f'"signature":{canonical_json(signature)},"time":{p.time}}}'
    )
    body = (head + tail).encode("utf-8")
    digest = _sha256(bytes.fromhex(prev_hash) + body).hexdigest()
    content = (
        f'{{"block":{block},"data":{p.content_data},"kind":{p.kind},"nonce":{p.nonce},'
        f'"sender":{p.sender},"seq":{seq},"time":{p.time}}}'
    )
    record = f'{head},"hash":"{digest}"{tail}'
    return Encoded(p.signing, body, record, content, digest)


def encode_entry(
    seq: int,
    block: int,
    tx: Transaction,
    signature: str,
    prev_hash: str,
    data_json: str | None = None,
) -> Encoded:
    """Lay out every encoding of an entry (the one place records are assembled:
    :func:`prepare_entry` then :func:`finish_entry`).

    ``data_json`` is ``canonical_json(tx.data)`` if already computed. The hash
    is computed from ``prev_hash`` and the body (the audit compares it with the
    stored one). Keys appear in sorted order by construction, so each text
    equals ``canonical_json`` of its dict.
    """
    return finish_entry(prepare_entry(tx, data_json), seq, block, signature, prev_hash)


def signing_message(tx: Transaction, data_json: str | None = None) -> bytes:
    """The bytes ``tx``'s sender signs (= ``tx.signing_bytes()``), reusing ``data_json``."""
    return prepare_entry(tx, data_json).signing
