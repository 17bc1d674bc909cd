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

import hashlib
import logging
import sqlite3
from concurrent.futures import Future, ProcessPoolExecutor
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


_SigJob = tuple[int, str, str, bytes]
_CHUNK = 4096


def _first_bad_signature(jobs: list[_SigJob]) -> int:
    """Sequence number of the first job whose signature fails, or -1 (runs in workers)."""
    for seq, public, signature, message in jobs:
        if not verify_signature(public, signature, message):
            return seq
    return -1


class _SignatureChecker:
    """Checks signatures inline (``workers == 1``) or in a process pool.

    Ed25519 verification dominates the audit, and pyca/cryptography holds the
    GIL while verifying, so parallel verification needs processes. The pool
    runs while the main process replays state; ``finish`` reports the lowest
    bad sequence number so the audit still names the *first* bad entry.
    """

    def __init__(self, workers: int) -> None:
        self._pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
        self._jobs: list[_SigJob] = []
        self._futures: list[Future[int]] = []

    def check(self, seq: int, sender: str, public: str, signature: str, message: bytes) -> None:
        if self._pool is None:
            if not verify_signature(public, signature, message):
                raise LedgerIntegrityError(seq, f"bad signature by {sender}")
            return
        self._jobs.append((seq, public, signature, message))
        if len(self._jobs) >= _CHUNK:
            self._futures.append(self._pool.submit(_first_bad_signature, self._jobs))
            self._jobs = []

    def finish(self) -> int:
        """Wait for every pending check; the first bad seq, or -1."""
        if self._pool is None:
            return -1
        if self._jobs:
            self._futures.append(self._pool.submit(_first_bad_signature, self._jobs))
            self._jobs = []
        bad = [r for r in (f.result() for f in self._futures) if r >= 0]
        self._pool.shutdown()
        return min(bad, default=-1)


def audit_ledger(path: Path | str, *, workers: int = 1) -> AuditReport:
    """Verify the ledger at ``path`` (run directory or ``.db``) from scratch.

    ``workers > 1`` verifies signatures in that many processes (same result,
    same first bad entry; faster on multi-core machines for large ledgers).
    """
    db = ledger_path(path)
    if not db.is_file():
        raise LedgerNotFoundError(f"no ledger at {db}")
    conn = connect(db, readonly=True)
    checker = _SignatureChecker(workers)
    try:
        try:
            report = _audit(conn, checker)
        except LedgerIntegrityError as exc:
            bad = checker.finish()
            if 0 <= bad < exc.seq:
                raise LedgerIntegrityError(bad, "bad signature") from None
            raise
        bad = checker.finish()
        if bad >= 0:
            raise LedgerIntegrityError(bad, "bad signature")
        return report
    finally:
        conn.close()


def _audit(conn: sqlite3.Connection, checker: _SignatureChecker) -> AuditReport:
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
        try:
            encoded = entry.encode()
        except ValueError as exc:
            raise LedgerIntegrityError(i, f"unencodable record: {exc}") from None
        if hashlib.sha256(bytes.fromhex(prev) + encoded.body).hexdigest() != entry.hash:
            raise LedgerIntegrityError(i, "hash does not match the entry's contents")
        if encoded.record != record:
            raise LedgerIntegrityError(i, "record is not in canonical form")
        if entry.block != state.block:
            raise LedgerIntegrityError(i, f"block {entry.block}, expected {state.block}")
        tx = entry.tx
        try:
            public = state.public_key_for(tx)
            checker.check(i, tx.sender, public, entry.signature, encoded.signing)
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
