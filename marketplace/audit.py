"""From-scratch audit of a ledger file.

Trusts nothing stored except the bytes of each record: it re-checks sequence
numbers (deletion, reordering), that the ``kind`` column readers select by
equals the record's kind, the hash chain, canonical encoding, that every
entry is signed for this ledger (its id is the genesis hash), every Ed25519
signature against the key its signer registered *on the ledger* in its first
entry (and nothing else: no key is derived), nonces, block numbers, and
re-derives every balance by replaying the transactions through
:class:`~marketplace.state.MarketState` (so an overdraft or an unauthorised
mint that was written directly into the file is caught). Every checkpoint's
Merkle root is recomputed and its signed note verified under the treasury's
key, and the ``head`` row must match the last entry. The first problem raises
:class:`LedgerIntegrityError` naming the entry's sequence number.

What the file alone cannot show is a truncation after the last sealed block
or a wholesale rewrite by someone holding the keyring: for that, pass a
``witness`` checkpoint obtained elsewhere (its signature is checked and a
consistency proof from it to the current tree is built and verified) or the
``heads`` a verifier expects to find. Per-kind ``checks`` hooks re-derive
what an entry claims (e.g. a contribution's ε from its mechanism parameters).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from marketplace.checkpoint import SignedCheckpoint, origin_of
from marketplace.entries import GENESIS_PREV, Entry, encode_entry
from marketplace.errors import (
    LedgerIntegrityError,
    LedgerNotFoundError,
    ProofError,
    TransactionError,
)
from marketplace.keys import verify_signature_raw
from marketplace.ledger import MALFORMED, checkpoint_note, connect, ledger_path, malformed_reason
from marketplace.merkle import MerkleTree, verify_consistency
from marketplace.state import TREASURY, MarketState

__all__ = ["AuditReport", "EntryCheck", "audit_ledger"]

EntryCheck = Callable[[Entry, MarketState], None]
"""A per-kind audit hook, called with each entry of its kind once the entry's
signature, ledger id and nonce are checked and it has been applied to the
state; it raises ValueError with the reason when the entry claims something
it cannot back (the audit reports it as that entry's failure)."""

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
    ledger_id: str
    content_digest: str
    treasury_key: str
    heads_found: Mapping[str, int] = field(default_factory=dict)
    """Each expected head (``heads``) found in the chain, with its sequence number."""
    consistency: tuple[str, ...] | None = None
    """The verified consistency proof from the witness checkpoint to this tree."""


_CHUNK = 512
"""Signatures handed to a verifier thread at a time."""

_IN_FLIGHT = 4
"""Chunks per verifier thread that may wait for a result before the audit waits for
the oldest (bounds the memory a large ledger's pending messages hold)."""


def _first_bad_signature(jobs: list[tuple[bytes, bytes, bytes]]) -> int:
    """Index of the first job whose signature does not verify, or -1 (runs in a
    verifier thread). A job is (32-byte registered key, 64-byte signature, message)."""
    for k, (public, sig, message) in enumerate(jobs):
        if not verify_signature_raw(public, sig, message):
            return k
    return -1


class _SignatureChecker:
    """Checks signatures inline (``workers == 1``) or in ``workers`` threads.

    Ed25519 verification dominates the audit, and libsodium (PyNaCl's cffi
    bindings) releases the GIL while it verifies, so threads verify in parallel
    with each other and with the main thread's hash-chain and state replay; only
    references to bytes change hands (nothing is pickled, no process is started).
    Chunks are awaited in submission order, so the audit still names the *first*
    bad entry: a bad signature found in a chunk is reported when every earlier
    chunk has verified, and every entry before it has passed the main thread's
    checks. (Without libsodium, pyca/cryptography holds the GIL: the same result,
    no faster.)
    """

    def __init__(self, workers: int) -> None:
        self._pool = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fedmarket-verify")
            if workers > 1
            else None
        )
        self._max_in_flight = _IN_FLIGHT * workers
        self._start = 0
        self._jobs: list[tuple[bytes, bytes, bytes]] = []
        self._senders: list[str] = []
        self._futures: deque[tuple[int, list[str], Future[int]]] = deque()
        self._keys: dict[str, bytes] = {}

    def check(self, seq: int, sender: str, public: str, signature: str, message: bytes) -> None:
        key = self._keys.get(public)
        if key is None:
            try:
                key = bytes.fromhex(public)
            except ValueError:
                key = b""
            self._keys[public] = key
        try:
            sig = bytes.fromhex(signature)
        except ValueError:
            sig = b""
        if len(sig) != 64 or len(key) != 32:
            raise LedgerIntegrityError(seq, f"bad signature by {sender}")
        if self._pool is None:
            if not verify_signature_raw(key, sig, message):
                raise LedgerIntegrityError(seq, f"bad signature by {sender}")
            return
        if not self._jobs:
            self._start = seq
        self._jobs.append((key, sig, message))
        self._senders.append(sender)
        if len(self._jobs) >= _CHUNK:
            self._submit()
            while len(self._futures) > self._max_in_flight:
                self._await_oldest()

    def _submit(self) -> None:
        assert self._pool is not None
        if self._jobs:
            future = self._pool.submit(_first_bad_signature, self._jobs)
            self._futures.append((self._start, self._senders, future))
        self._jobs, self._senders = [], []

    def _await_oldest(self) -> None:
        """Wait for the oldest pending chunk; raise for its first bad signature."""
        start, senders, future = self._futures.popleft()
        bad = future.result()
        if bad >= 0:
            raise LedgerIntegrityError(start + bad, f"bad signature by {senders[bad]}")

    def finish(self, upto: int | None = None) -> None:
        """Wait for the pending chunks in order, raising for the first bad signature
        (only one at or before entry ``upto``, when the main thread found a problem
        there: an entry's signature is handed over before its later checks run, so a
        bad one at ``upto`` comes first, as it does inline)."""
        if self._pool is None:
            return
        self._submit()
        while self._futures:
            start = self._futures[0][0]
            if upto is not None and start > upto:
                break
            try:
                self._await_oldest()
            except LedgerIntegrityError as exc:
                if upto is None or exc.seq <= upto:
                    raise
                break

    def cancel(self) -> None:
        """Shut the pool down without waiting for pending chunks."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def audit_ledger(
    path: Path | str,
    *,
    workers: int = 1,
    checks: Mapping[str, Sequence[EntryCheck]] | None = None,
    witness: SignedCheckpoint | None = None,
    heads: Collection[str] = (),
) -> AuditReport:
    """Verify the ledger at ``path`` (run directory or ``.db``) from scratch.

    ``workers > 1`` verifies signatures in that many threads beside the main one
    (same result, same first bad entry; faster on a multi-core machine).
    ``checks`` maps entry kinds to extra :data:`EntryCheck` hooks. ``witness``
    is a signed checkpoint held elsewhere: its signature must verify under this
    ledger's treasury key and the ledger must extend it (ProofError if not).
    ``heads`` are entry hashes to look for (``AuditReport.heads_found``).
    """
    db = ledger_path(path)
    if not db.is_file():
        raise LedgerNotFoundError(f"no ledger at {db}")
    try:
        conn = connect(db, readonly=True)
    except sqlite3.Error as exc:
        raise LedgerIntegrityError(0, f"cannot open the ledger database: {exc}") from None
    checker = _SignatureChecker(workers)
    try:
        try:
            report, tree = _audit(conn, checker, checks or {}, frozenset(heads))
        except LedgerIntegrityError as exc:
            checker.finish(upto=exc.seq)  # a bad signature up to it comes first
            raise
        checker.finish()
    finally:
        checker.cancel()
        conn.close()
    if witness is not None:
        proof = check_witness(witness, report, tree)
        report = replace(report, consistency=proof)
    logger.info("audit ok: %d entries, head %s", report.entries, report.head_hash)
    return report


def _stored_rows(cursor: sqlite3.Cursor) -> Iterator[tuple[int, str, str]]:
    """The stored rows in order; a page SQLite cannot read ends the audit at the
    entry it holds, as a :class:`LedgerIntegrityError`, never a database traceback."""
    n = 0
    try:
        for row in cursor:
            yield row
            n += 1
    except sqlite3.Error as exc:
        raise LedgerIntegrityError(n, f"unreadable ledger database: {exc}") from None


def check_witness(
    witness: SignedCheckpoint, report: AuditReport, tree: MerkleTree
) -> tuple[str, ...]:
    """Check an audited ledger against a checkpoint held elsewhere; returns the
    verified consistency proof (hex) from the checkpoint's tree to the current one."""
    cp = witness.checkpoint
    origin = origin_of(report.ledger_id)
    if cp.origin != origin:
        raise ProofError(
            f"the checkpoint is for {cp.origin}, this ledger is {origin} "
            "(a different ledger, or this one was rewritten with other keys)"
        )
    witness.verify(origin, bytes.fromhex(report.treasury_key))
    if cp.tree_size > report.entries:
        raise ProofError(
            f"ledger truncated: the checkpoint covers {cp.tree_size} entries, "
            f"the ledger has {report.entries}"
        )
    proof = tree.consistency_proof(cp.tree_size, report.entries)
    try:
        verify_consistency(cp.tree_size, report.entries, proof, cp.root, tree.root())
    except ProofError as exc:
        raise ProofError(
            f"the ledger does not extend the checkpoint of {cp.tree_size} entries "
            f"(rewritten after it was published): {exc}"
        ) from None
    return tuple(p.hex() for p in proof)


def _audit(
    conn: sqlite3.Connection,
    checker: _SignatureChecker,
    checks: Mapping[str, Sequence[EntryCheck]],
    heads: frozenset[str],
) -> tuple[AuditReport, MerkleTree]:
    state = MarketState()
    tree = MerkleTree()
    content = hashlib.sha256()
    prev = GENESIS_PREV
    expected = 0
    last_checkpoint = -1
    found: dict[str, int] = {}
    try:
        cursor = conn.execute("SELECT seq, kind, record FROM entries ORDER BY seq")
        head_row = conn.execute("SELECT seq, hash FROM head WHERE id = 0").fetchone()
    except sqlite3.Error as exc:
        raise LedgerIntegrityError(0, f"unreadable ledger database: {exc}") from None
    # Pre-bound hot-path callables (one attribute lookup per audit, not per entry).
    sha256, from_record, check = hashlib.sha256, Entry.from_record, checker.check
    public_key_for, apply, tree_append = state.public_key_for, state.apply, tree.append
    content_update = content.update
    for row_seq, kind_column, record in _stored_rows(cursor):
        i = expected
        if row_seq != i:
            raise LedgerIntegrityError(i, f"missing (next stored row is #{row_seq})")
        try:
            entry = from_record(record)
        except MALFORMED as exc:
            raise LedgerIntegrityError(i, f"malformed record: {malformed_reason(exc)}") from None
        if entry.seq != i:
            raise LedgerIntegrityError(i, f"out of order: record says #{entry.seq}")
        if kind_column != entry.kind:
            raise LedgerIntegrityError(
                i, f"kind column says {kind_column!r} but the record is a {entry.kind!r} entry"
            )
        if entry.prev_hash != prev:
            raise LedgerIntegrityError(i, "previous-hash link broken")
        tx = entry.tx
        try:
            enc = encode_entry(i, entry.block, tx, entry.signature, prev)
        except MALFORMED as exc:
            raise LedgerIntegrityError(i, f"unencodable record: {malformed_reason(exc)}") from None
        if enc.hash != entry.hash:
            raise LedgerIntegrityError(i, "hash does not match the entry's contents")
        if enc.record != record:
            raise LedgerIntegrityError(i, "record is not in canonical form")
        if entry.block != state.block:
            raise LedgerIntegrityError(i, f"block {entry.block}, expected {state.block}")
        try:
            if tx.ledger != state.ledger_id or i == 0:
                state.check_ledger(tx)
            public = public_key_for(tx)
            check(i, tx.sender, public, entry.signature, enc.signing)
            if entry.kind == "checkpoint":
                _check_checkpoint(entry, state, tree)
                last_checkpoint = i
            apply(tx)
            if i == 0:
                state.ledger_id = entry.hash
            for hook in checks.get(entry.kind, ()):
                hook(entry, state)
        except TransactionError as exc:
            raise LedgerIntegrityError(i, f"invalid transaction: {exc}") from None
        except (*MALFORMED, ProofError) as exc:
            raise LedgerIntegrityError(i, f"invalid transaction: {malformed_reason(exc)}") from None
        tree_append(sha256(b"\x00" + record.encode("utf-8")).digest())  # RFC 6962 leaf
        content_update(enc.content.encode("utf-8") + b"\n")
        if heads and entry.hash in heads:
            found[entry.hash] = i
        prev = entry.hash
        expected += 1
    if expected == 0:
        raise LedgerIntegrityError(0, "ledger is empty (no genesis)")
    head_seq = head_row[0] if head_row is not None and type(head_row[0]) is int else None
    if head_seq is None or head_seq != expected - 1 or head_row[1] != prev:
        claimed = "none" if head_row is None else f"#{str(head_row[0])[:40]}"
        bad = expected if head_seq is None or head_seq >= expected else expected - 1
        raise LedgerIntegrityError(
            bad, f"ledger truncated or head altered (head row says {claimed})"
        )
    if state.total_held() != state.supply:
        raise LedgerIntegrityError(
            expected - 1, f"supply {state.supply} != tokens held {state.total_held()}"
        )
    assert state.ledger_id is not None
    report = AuditReport(
        entries=expected,
        sealed_blocks=state.block,
        open_block_entries=expected - 1 - last_checkpoint,
        head_hash=prev,
        root=tree.root().hex(),
        supply=state.supply,
        accounts=len(state.accounts),
        ledger_id=state.ledger_id,
        content_digest=content.hexdigest(),
        treasury_key=state.accounts[TREASURY].public_key,
        heads_found=found,
    )
    return report, tree


def _check_checkpoint(entry: Entry, state: MarketState, tree: MerkleTree) -> None:
    """A checkpoint's root is recomputed and its signed note verified (treasury key)."""
    if entry.data.get("root") != tree.root(entry.seq).hex():
        raise ValueError("checkpoint Merkle root does not match")
    assert state.ledger_id is not None
    treasury = state.accounts.get(TREASURY)
    if treasury is None:
        raise ValueError("no treasury key to verify the checkpoint under")
    checkpoint_note(entry, state.ledger_id, bytes.fromhex(treasury.public_key))
