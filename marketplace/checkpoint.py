"""Signed checkpoints as text: the C2SP tlog-checkpoint body in a C2SP signed note.

A checkpoint says "the ledger ``origin`` had ``tree_size`` entries with RFC 6962
Merkle root ``root``". Its text (https://c2sp.org/tlog-checkpoint and
https://c2sp.org/signed-note, as Go's ``golang.org/x/mod/sumdb/note`` and the
transparency-dev witnesses implement them)::

    fedmarket.ledger/<ledger id: 64 hex digits>
    <tree size, decimal>
    <root, standard base64>

    — <key name> <base64(4-byte key id || 64-byte Ed25519 signature)>

The signature covers the body (the first three lines, each ending in a
newline). The key name is the origin; the key id is the first 4 bytes of
``SHA-256(name || "\\n" || 0x01 || public key)`` and the verifier key is
``<name>+<key id hex>+<base64(0x01 || public key)>``. The treasury (the log
operator) signs one such note per sealed block; the checkpoint entry stores the
signature, so ``fedmarket ledger checkpoint`` can export it for a witness to
hold and ``fedmarket ledger verify --checkpoint`` can check a ledger against it.
The signed-note code is tested on Go's published ``note_test.go`` vector.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from marketplace.errors import ProofError
from marketplace.keys import verify_signature_raw

__all__ = [
    "ORIGIN_PREFIX",
    "Checkpoint",
    "NoteSignature",
    "SignedCheckpoint",
    "key_id",
    "origin_of",
    "parse_verifier_key",
    "verifier_key",
]

ORIGIN_PREFIX = "fedmarket.ledger/"
_ALG_ED25519 = b"\x01"
_DASH = "\u2014"  # the em dash that opens a signature line
_NAME = re.compile(r"^[^\s+]+$")


def origin_of(ledger_id: str) -> str:
    """The checkpoint origin (and key name) of the ledger whose genesis hash is ``ledger_id``."""
    return f"{ORIGIN_PREFIX}{ledger_id}"


def key_id(name: str, public: bytes) -> bytes:
    """The signed-note key id: ``SHA-256(name || "\\n" || 0x01 || public)[:4]``."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + _ALG_ED25519 + public).digest()[:4]


def verifier_key(name: str, public: bytes) -> str:
    """The signed-note verifier key string of an Ed25519 public key."""
    encoded = base64.b64encode(_ALG_ED25519 + public).decode("ascii")
    return f"{name}+{key_id(name, public).hex()}+{encoded}"


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    """``(name, public key)`` of a verifier key string; ProofError if malformed."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not _NAME.match(parts[0]) or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise ProofError(f"malformed verifier key {text!r}")
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except binascii.Error:
        raise ProofError(f"malformed verifier key {text!r}") from None
    if len(raw) != 33 or raw[:1] != _ALG_ED25519:
        raise ProofError(f"verifier key {parts[0]!r} is not an Ed25519 key")
    if key_id(parts[0], raw[1:]).hex() != parts[1]:
        raise ProofError(f"verifier key {parts[0]!r}: key id does not match the key")
    return parts[0], raw[1:]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: origin, tree size and root (tlog-checkpoint body)."""

    origin: str
    tree_size: int
    root: bytes

    def body(self) -> str:
        """The signed text: three lines, each ending in a newline."""
        return f"{self.origin}\n{self.tree_size}\n{base64.b64encode(self.root).decode('ascii')}\n"

    @classmethod
    def parse_body(cls, body: str) -> Checkpoint:
        """Parse a checkpoint body (extension lines are refused: we never write any)."""
        lines = body.split("\n")
        if len(lines) != 4 or lines[3] != "":
            raise ProofError("a checkpoint body has exactly 3 lines (origin, size, root)")
        origin, size, root = lines[:3]
        if not origin or not _NAME.match(origin):
            raise ProofError(f"bad checkpoint origin {origin!r}")
        if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size):
            raise ProofError(f"bad checkpoint tree size {size!r}")
        try:
            raw = base64.b64decode(root, validate=True)
        except binascii.Error:
            raise ProofError("checkpoint root is not base64") from None
        if len(raw) != 32:
            raise ProofError(f"checkpoint root has {len(raw)} bytes, expected 32")
        return cls(origin, int(size), raw)


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a signed note."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{_DASH} {self.name} {blob}\n"


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint and its signatures, in signed-note text form."""

    checkpoint: Checkpoint
    signatures: tuple[NoteSignature, ...]

    @classmethod
    def sign(
        cls, checkpoint: Checkpoint, name: str, public: bytes, sign: Callable[[bytes], bytes]
    ) -> SignedCheckpoint:
        """Sign ``checkpoint`` with ``sign`` (a 64-byte Ed25519 signer of ``public``)."""
        signature = sign(checkpoint.body().encode("utf-8"))
        return cls(checkpoint, (NoteSignature(name, key_id(name, public), signature),))

    def text(self) -> str:
        """The signed note: body, a blank line, one line per signature."""
        return self.checkpoint.body() + "\n" + "".join(s.line() for s in self.signatures)

    @classmethod
    def parse(cls, text: str) -> SignedCheckpoint:
        """Parse signed-note text; ProofError naming what is malformed."""
        if not text.endswith("\n") or "\n\n" not in text:
            raise ProofError("not a signed note (no blank line before the signatures)")
        split = text.rindex("\n\n")
        body, sigs = text[: split + 1], text[split + 2 :]
        checkpoint = Checkpoint.parse_body(body)
        signatures = []
        for line in sigs.split("\n")[:-1]:
            m = re.fullmatch(rf"{_DASH} (\S+) (\S+)", line)
            if m is None or not _NAME.match(m.group(1)):
                raise ProofError(f"malformed signature line {line!r}")
            try:
                blob = base64.b64decode(m.group(2), validate=True)
            except binascii.Error:
                raise ProofError(f"signature of {m.group(1)!r} is not base64") from None
            if len(blob) != 68:
                raise ProofError(f"signature of {m.group(1)!r} is not an Ed25519 signature")
            signatures.append(NoteSignature(m.group(1), blob[:4], blob[4:]))
        if not signatures:
            raise ProofError("the note carries no signature")
        return cls(checkpoint, tuple(signatures))

    def verify(self, name: str, public: bytes) -> None:
        """Raise ProofError unless a signature by key ``name``/``public`` verifies."""
        kid = key_id(name, public)
        mine = [s for s in self.signatures if s.name == name and s.key_id == kid]
        if not mine:
            raise ProofError(f"the checkpoint is not signed by {name} (key id {kid.hex()})")
        body = self.checkpoint.body().encode("utf-8")
        if not any(verify_signature_raw(public, s.signature, body) for s in mine):
            raise ProofError(f"the checkpoint signature by {name} does not verify")
