"""Deterministic Ed25519 identities.

Every account (data owner, buyer, validator, the treasury) has an Ed25519 key
pair derived from the scenario seed, so a run is reproducible byte for byte::

    private_key_bytes = SHA-256(b"fedmarket-key\\x00" || str(seed) || b"\\x00" || account_id)

This is a *simulation* convenience: anyone who knows the seed can re-derive
every key. The ledger itself never trusts the derivation: the public key of an
account is recorded on the ledger when it registers, and the audit verifies
signatures against those recorded keys only.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["derive_private_key", "public_key_hex", "verify_signature"]


def derive_private_key(seed: int, account: str) -> Ed25519PrivateKey:
    """The Ed25519 private key of ``account`` under scenario ``seed``."""
    material = b"fedmarket-key\x00" + str(seed).encode() + b"\x00" + account.encode("utf-8")
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(material).digest())


def public_key_hex(key: Ed25519PrivateKey) -> str:
    """Raw 32-byte public key of ``key``, hex encoded."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@lru_cache(maxsize=4096)
def _load_public(public_hex: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))


def verify_signature(public_hex: str, signature_hex: str, message: bytes) -> bool:
    """True when ``signature_hex`` is a valid signature of ``message``; never raises."""
    try:
        _load_public(public_hex).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True
