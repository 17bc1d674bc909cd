"""From-scratch audit of a ledger file.

Trusts nothing stored except the bytes of each record: it re-checks sequence
numbers (deletion, reordering), the hash chain, canonical encoding, every
Ed25519 signature against the keys registered *on the ledger*, nonces, block
numbers, and re-derives every balance by replaying the transactions through
:class:`~marketplace.state.MarketState` (so an overdraft or an unauthorised
mint that was written directly into the file is caught). Every checkpoint's
Merkle root is recomputed, and the ``head`` row must match the last entry
(truncation). The first problem raises :class:`LedgerIntegrityError` naming
the entry's sequence number.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from marketplace.entries import GENESIS_PREV, Entry
from marketplace.errors import LedgerIntegrityError, LedgerNotFoundError, TransactionError
from marketplace.keys import verify_signature
from marketplace.ledger import connect, ledger_path
from marketplace.merkle import MerkleTree, leaf_hash
from marketplace.state import MarketState

__all__ = ["AuditReport", "audit_ledger"]

logger = logging.getLogger("fedmarket.ledger")


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What a successful audit established."""

    entries: int
    sealed_blocks: int
    open_block_entries: int
    head_hash: str
    root: str
    supply: int
    accounts: int


def audit_ledger(path: Path | str) -> AuditReport:
    """Verify the ledger at ``path`` (run directory or ``.db``) from scratch."""
    db = ledger_path(path)
    if not db.is_file():
        raise LedgerNotFoundError(f"no ledger at {db}")
    conn = connect(db, readonly=True)
    try:
        return _audit(conn)
    finally:
        conn.close()


def _audit(conn: sqlite3.Connection) -> AuditReport:
    state = MarketState()
    tree = MerkleTree()
    prev = GENESIS_PREV
    expected = 0
    last_checkpoint = -1
    try:
        cursor = conn.execute("SELECT seq, record FROM entries ORDER BY seq")
        head_row = conn.execute("SELECT seq, hash FROM head WHERE id = 0").fetchone()
    except sqlite3.Error as exc:
        raise LedgerIntegrityError(0, f"unreadable ledger database: {exc}") from None
    for row_seq, record in cursor:
        i = expected
        if row_seq != i:
            raise LedgerIntegrityError(i, f"missing (next stored row is #{row_seq})")
        try:
            entry = Entry.from_record(record)
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerIntegrityError(i, f"malformed record: {exc}") from None
        if entry.seq != i:
            raise LedgerIntegrityError(i, f"out of order: record says #{entry.seq}")
        if entry.prev_hash != prev:
            raise LedgerIntegrityError(i, "previous-hash link broken")
        if Entry.compute_hash(prev, entry.body()) != entry.hash:
            raise LedgerIntegrityError(i, "hash does not match the entry's contents")
        if entry.record() != record:
            raise LedgerIntegrityError(i, "record is not in canonical form")
        if entry.block != state.block:
            raise LedgerIntegrityError(i, f"block {entry.block}, expected {state.block}")
        tx = entry.tx
        try:
            public = state.public_key_for(tx)
            if not verify_signature(public, entry.signature, tx.signing_bytes()):
                raise LedgerIntegrityError(i, f"bad signature by {tx.sender}")
            if entry.kind == "checkpoint":
                root = tree.root(i).hex()
                if entry.data.get("root") != root:
                    raise LedgerIntegrityError(i, "checkpoint Merkle root does not match")
                last_checkpoint = i
            state.apply(tx)
        except TransactionError as exc:
            raise LedgerIntegrityError(i, f"invalid transaction: {exc}") from None
        except ValueError as exc:
            raise LedgerIntegrityError(i, f"invalid transaction: {exc}") from None
        tree.append(leaf_hash(record.encode("utf-8")))
        prev = entry.hash
        expected += 1
    if expected == 0:
        raise LedgerIntegrityError(0, "ledger is empty (no genesis)")
    if head_row is None or int(head_row[0]) != expected - 1 or head_row[1] != prev:
        claimed = "none" if head_row is None else f"#{head_row[0]}"
        bad = expected if head_row is None or int(head_row[0]) >= expected else expected - 1
        raise LedgerIntegrityError(
            bad, f"ledger truncated or head altered (head row says {claimed})"
        )
    if state.total_held() != state.supply:
        raise LedgerIntegrityError(
            expected - 1, f"supply {state.supply} != tokens held {state.total_held()}"
        )
    report = AuditReport(
        entries=expected,
        sealed_blocks=state.block,
        open_block_entries=expected - 1 - last_checkpoint,
        head_hash=prev,
        root=tree.root().hex(),
        supply=state.supply,
        accounts=len(state.accounts),
    )
    logger.info("audit ok: %d entries, head %s", expected, prev)
    return report
