"""Canonical JSON: the single byte encoding that is hashed and signed.

Sorted keys, compact separators, UTF-8, and no NaN/Infinity, so that the same
value always yields the same bytes and hence the same hash on every machine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TypeAlias

__all__ = ["JSON", "canonical_bytes", "canonical_json", "sha256_hex"]

JSON: TypeAlias = "bool | int | float | str | Sequence[JSON] | Mapping[str, JSON] | None"


# One shared encoder: ``json.dumps(value, **same options)`` builds exactly this
# encoder and calls ``encode`` on it, so the output is identical; reusing it
# saves constructing an encoder per call (the hot path of every append).
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_encode = _ENCODER.encode


def canonical_json(value: object) -> str:
    """Encode ``value`` as canonical JSON text (raises ValueError on NaN/Inf)."""
    return _encode(value)


def canonical_bytes(value: object) -> bytes:
    """Canonical JSON encoded as UTF-8 bytes."""
    return canonical_json(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
