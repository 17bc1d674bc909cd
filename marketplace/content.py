"""Content digests: what must be equal when someone else re-runs a scenario.

A ledger's *head* depends on the keyring (every signature does), so two people
re-running one scenario and seed get different heads. Its *content digest*
does not: it is ``SHA-256`` over each entry's content record (see
:mod:`marketplace.entries`: every field but signatures, keys, hashes and the
ledger id, and without a checkpoint's root and note signature), one per line
in sequence order. Equal content digests mean the same entries in the same
order with the same data; :func:`first_difference` names the first entry
that is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from marketplace.errors import LedgerNotFoundError
from marketplace.ledger import connect, ledger_path, read_entry

__all__ = ["ContentDifference", "content_digest", "content_records", "first_difference"]


def content_records(path: Path | str, stop: int | None = None) -> Iterator[str]:
    """The content record of each entry ``seq < stop`` (all by default), in order."""
    db = ledger_path(path)
    if not db.is_file():
        raise LedgerNotFoundError(f"no ledger at {db}")
    conn = connect(db, readonly=True)
    try:
        query = "SELECT seq, record FROM entries WHERE seq < ? ORDER BY seq"
        for seq, record in conn.execute(query, (2**62 if stop is None else stop,)):
            yield read_entry(seq, record, None).encode().content
    finally:
        conn.close()


def content_digest(path: Path | str, stop: int | None = None) -> str:
    """The content digest of the first ``stop`` entries (all by default)."""
    h = hashlib.sha256()
    for text in content_records(path, stop):
        h.update(text.encode("utf-8") + b"\n")
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class ContentDifference:
    """The first entry whose content differs (``None`` where one ledger has no such entry)."""

    seq: int
    left: str | None
    right: str | None


def first_difference(
    left: Path | str, right: Path | str, stop: int | None = None
) -> ContentDifference | None:
    """The first entry (``seq < stop``) whose content differs between two ledgers."""
    pairs = zip_longest(content_records(left, stop), content_records(right, stop))
    for seq, (a, b) in enumerate(pairs):
        if a != b:
            return ContentDifference(seq, a, b)
    return None
