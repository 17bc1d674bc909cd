"""Transactions and ledger entries: immutable records with one canonical encoding.

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
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from marketplace.canonical import JSON, canonical_bytes, canonical_json

__all__ = [
    "GENESIS_PREV",
    "Encoded",
    "Entry",
    "SignedTransaction",
    "Transaction",
    "json_float",
    "json_str",
    "record_parts",
    "signing_text",
]

GENESIS_PREV = "00" * 32


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


class Entry(NamedTuple):
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
        kind, sender, time = json_str(self.kind), json_str(self.sender), json_float(self.time)
        head, tail = record_parts(
            self.seq, self.block, kind, self.nonce, self.prev_hash, sender, self.signature, time, dj
        )
        record = f'{head},"hash":{json_str(self.hash)}{tail}'
        signing = signing_text(kind, self.nonce, sender, time, dj).encode("utf-8")
        return Encoded(signing, (head + tail).encode("utf-8"), record)

    @classmethod
    def from_record(cls, record: str) -> Entry:
        """Parse a stored record; raises ValueError/KeyError/TypeError when malformed."""
        d = json.loads(record)
        if not isinstance(d, dict):
            raise ValueError("record is not a JSON object")
        data = d["data"]
        return cls(
            int(d["seq"]),
            int(d["block"]),
            str(d["kind"]),
            str(d["sender"]),
            int(d["nonce"]),
            float(d["time"]),
            data.copy() if type(data) is dict else dict(data),
            str(d["signature"]),
            str(d["prev_hash"]),
            str(d["hash"]),
        )


@dataclass(frozen=True, slots=True)
class Encoded:
    """The three canonical encodings of an entry."""

    signing: bytes
    body: bytes
    record: str


def _signing(kind: str, sender: str, nonce: int, time: float, data_json: str) -> bytes:
    text = signing_text(json_str(kind), nonce, json_str(sender), json_float(time), data_json)
    return text.encode("utf-8")


# The helpers below take *already encoded* JSON fragments (``json_str`` of the
# strings, ``json_float`` of the time, canonical JSON of ``data``) so that the
# append and audit hot paths encode each field exactly once. Keys are written
# in sorted order by construction; ``test_encoding`` checks the result equals
# ``canonical_json`` byte for byte.


def signing_text(kind_j: str, nonce: int, sender_j: str, time_j: str, data_json: str) -> str:
    """Canonical JSON of ``{data, kind, nonce, sender, time}`` (what is signed)."""
    return (
        f'{{"data":{data_json},"kind":{kind_j},"nonce":{nonce},'
        f'"sender":{sender_j},"time":{time_j}}}'
    )


def record_parts(
    seq: int,
    block: int,
    kind_j: str,
    nonce: int,
    prev_hash: str,
    sender_j: str,
    signature: str,
    time_j: str,
    data_json: str,
) -> tuple[str, str]:
    """``(head, tail)``: the body is ``head + tail`` and the record is
    ``head + ',"hash":"<hash>"' + tail`` (``hash`` sorts between ``data`` and ``kind``)."""
    head = f'{{"block":{block},"data":{data_json}'
    tail = (
        f',"kind":{kind_j},"nonce":{nonce},"prev_hash":{json_str(prev_hash)},'
        f'"sender":{sender_j},"seq":{seq},"signature":{json_str(signature)},'
        f'"time":{time_j}}}'
    )
    return head, tail


json_str = encode_basestring
"""JSON string literal, as ``json.dumps(value, ensure_ascii=False)`` writes it."""


def json_float(value: float) -> str:
    """JSON number for a finite float, as ``json.dumps`` writes it."""
    if not math.isfinite(value):
        raise ValueError(f"time must be finite, got {value!r}")
    return float.__repr__(float(value))
