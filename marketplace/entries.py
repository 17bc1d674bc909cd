"""Transactions and ledger entries: frozen dataclasses with one canonical encoding.

A :class:`Transaction` is what a sender signs: ``kind``, ``sender``, per-account
``nonce``, simulated ``time`` and ``data``. An :class:`Entry` is a transaction
once the ledger accepted it: it adds the sequence number, the block, the
signature and the previous entry's hash. The entry hash is
``SHA-256(prev_hash || canonical(body))`` where ``body`` is every field but the
hash itself; the stored record (and the Merkle leaf data) is
``canonical(body + {"hash": ...})``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marketplace.canonical import JSON, canonical_bytes, canonical_json

__all__ = ["GENESIS_PREV", "Encoded", "Entry", "SignedTransaction", "Transaction"]

GENESIS_PREV = "00" * 32


@dataclass(frozen=True, slots=True)
class Transaction:
    """What a sender signs. ``time`` is the simulated clock, never wall time."""

    kind: str
    sender: str
    nonce: int
    time: float
    data: Mapping[str, JSON]

    def signing_bytes(self, data_json: str | None = None) -> bytes:
        """The exact bytes covered by the sender's Ed25519 signature:
        canonical JSON of ``{data, kind, nonce, sender, time}``.

        ``data_json`` (the canonical JSON of ``data``, if already computed)
        saves re-encoding it.
        """
        dj = canonical_json(self.data) if data_json is None else data_json
        return _signing(self.kind, self.sender, self.nonce, self.time, dj)

    def describe(self) -> str:
        """Short identification used in error messages: ``transfer by client-001 #3``."""
        return f"{self.kind} by {self.sender} #{self.nonce}"


@dataclass(frozen=True, slots=True)
class SignedTransaction:
    """A transaction and its hex signature, as submitted by an outside signer."""

    tx: Transaction
    signature: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One accepted, hash-chained ledger entry."""

    seq: int
    block: int
    kind: str
    sender: str
    nonce: int
    time: float
    data: Mapping[str, JSON]
    signature: str
    prev_hash: str
    hash: str

    @property
    def tx(self) -> Transaction:
        """The signed transaction inside this entry."""
        return Transaction(self.kind, self.sender, self.nonce, self.time, self.data)

    def body(self) -> dict[str, Any]:
        """Every field except ``hash``: what the hash covers."""
        return {
            "seq": self.seq,
            "block": self.block,
            "kind": self.kind,
            "sender": self.sender,
            "nonce": self.nonce,
            "time": self.time,
            "data": self.data,
            "signature": self.signature,
            "prev_hash": self.prev_hash,
        }

    def record(self) -> str:
        """Canonical JSON of the whole entry: what is stored and Merkle-hashed."""
        body = self.body()
        body["hash"] = self.hash
        return canonical_json(body)

    @staticmethod
    def compute_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
        """``SHA-256(prev_hash bytes || canonical(body))`` as hex."""
        return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_bytes(body)).hexdigest()

    @classmethod
    def build(
        cls, *, seq: int, block: int, tx: Transaction, signature: str, prev_hash: str
    ) -> Entry:
        """Create an entry and compute its hash."""
        partial = cls(
            seq, block, tx.kind, tx.sender, tx.nonce, tx.time, tx.data, signature, prev_hash, ""
        )
        digest = cls.compute_hash(prev_hash, partial.body())
        return cls(
            seq, block, tx.kind, tx.sender, tx.nonce, tx.time, tx.data, signature, prev_hash, digest
        )

    def encode(self, data_json: str | None = None) -> Encoded:
        """Signing bytes, body bytes and record text with a single JSON encoding of ``data``.

        Equal byte for byte to ``signing_bytes()``, ``canonical(body())`` and
        ``record()`` (a test checks this): the keys are written in sorted order
        by construction. This is the hot path of appends and of the audit.
        """
        dj = canonical_json(self.data) if data_json is None else data_json
        kind, sender, time = _jstr(self.kind), _jstr(self.sender), _jfloat(self.time)
        head = f'{{"block":{self.block},"data":{dj}'
        tail = (
            f',"kind":{kind},"nonce":{self.nonce},"prev_hash":{_jstr(self.prev_hash)},'
            f'"sender":{sender},"seq":{self.seq},"signature":{_jstr(self.signature)},'
            f'"time":{time}}}'
        )
        body = head + tail
        record = f'{head},"hash":{_jstr(self.hash)}{tail}'
        signing = _signing(self.kind, self.sender, self.nonce, self.time, dj)
        return Encoded(signing, body.encode("utf-8"), record)

    @classmethod
    def from_record(cls, record: str) -> Entry:
        """Parse a stored record; raises ValueError/KeyError/TypeError when malformed."""
        d = json.loads(record)
        if not isinstance(d, dict):
            raise ValueError("record is not a JSON object")
        return cls(
            seq=int(d["seq"]),
            block=int(d["block"]),
            kind=str(d["kind"]),
            sender=str(d["sender"]),
            nonce=int(d["nonce"]),
            time=float(d["time"]),
            data=dict(d["data"]),
            signature=str(d["signature"]),
            prev_hash=str(d["prev_hash"]),
            hash=str(d["hash"]),
        )


@dataclass(frozen=True, slots=True)
class Encoded:
    """The three canonical encodings of an entry."""

    signing: bytes
    body: bytes
    record: str


def _signing(kind: str, sender: str, nonce: int, time: float, data_json: str) -> bytes:
    text = (
        f'{{"data":{data_json},"kind":{_jstr(kind)},"nonce":{nonce},'
        f'"sender":{_jstr(sender)},"time":{_jfloat(time)}}}'
    )
    return text.encode("utf-8")


def _jstr(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _jfloat(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"time must be finite, got {value!r}")
    return float.__repr__(float(value))
