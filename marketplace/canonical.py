"""Canonical JSON: the single byte encoding that is hashed and signed.

The encoding is ``json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False)`` encoded as UTF-8, through one shared
:class:`json.JSONEncoder` (public API only). Spelled out, so that another
implementation can produce the same bytes (``tests/fixtures/canonical/``
holds input → exact bytes → SHA-256 vectors for it):

* objects: keys sorted by Unicode code point, no whitespace (``{"a":1,"b":[]}``);
* strings: UTF-8, unescaped except ``"`` → ``\\"``, ``\\`` → ``\\\\``, and the
  control characters U+0000-U+001F (``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\f``,
  else ``\\u00XX`` in lowercase hex); U+2028 and non-ASCII are written as is;
* integers: decimal without sign for >= 0; ``true``/``false``/``null``;
* floats (a distinct type from integers: ``1.0`` is not ``1``): Python's
  shortest round-trip ``repr`` (``0.1``, ``1e-07``, ``1e+16``, ``-0.0``);
  NaN and infinities are refused (ValueError).

Note for other languages: keys sort by code point, not by UTF-16 code unit as
in RFC 8785 (they differ only for keys with characters above U+FFFF).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TypeAlias

__all__ = ["JSON", "canonical_bytes", "canonical_json", "sha256_hex"]

JSON: TypeAlias = "bool | int | float | str | Sequence[JSON] | Mapping[str, JSON] | None"

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_encode = _ENCODER.encode


def canonical_json(value: object) -> str:
    """Encode ``value`` as canonical JSON text (raises ValueError on NaN/Inf or a
    cycle, TypeError on a value JSON cannot hold)."""
    return _encode(value)


def canonical_bytes(value: object) -> bytes:
    """Canonical JSON encoded as UTF-8 bytes."""
    return _encode(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
