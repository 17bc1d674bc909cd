"""Inclusion proofs against signed checkpoints, straight from a ledger file.

``fedmarket ledger prove`` and ``ledger checkpoint`` use these rather than
:meth:`Market.open`: they replay no state (so a tampered entry cannot stop
them before they say what is wrong) and trust nothing they do not check. The
ledger id is recomputed from the genesis record, the latest checkpoint's
records must say they are checkpoints (the ``kind`` column only finds them),
its entry signature and signed note must verify under the treasury key that
genesis registered, and the proof is checked against the *signed* root, never
a root recomputed from the file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from marketplace.checkpoint import SignedCheckpoint, origin_of, verifier_key
from marketplace.entries import Entry, signing_message
from marketplace.errors import (
    LedgerIntegrityError,
    LedgerNotFoundError,
    MarketplaceError,
    ProofError,
)
from marketplace.keys import verify_signature
from marketplace.ledger import (
    MALFORMED,
    InclusionProof,
    checkpoint_note,
    connect,
    ledger_path,
    malformed_reason,
    read_entry,
)
from marketplace.merkle import MerkleTree, leaf_hash, verify_inclusion

__all__ = ["LedgerKey", "latest_signed_checkpoint", "ledger_key", "prove_inclusion"]


class LedgerKey:
    """A ledger's id (recomputed genesis hash) and its treasury's public key."""

    __slots__ = ("ledger_id", "treasury_key")

    def __init__(self, ledger_id: str, treasury_key: bytes) -> None:
        self.ledger_id = ledger_id
        self.treasury_key = treasury_key

    @property
    def origin(self) -> str:
        return origin_of(self.ledger_id)

    def verifier_key(self) -> str:
        """The signed-note verifier key of the treasury (for a witness to pin)."""
        return verifier_key(self.origin, self.treasury_key)


def _open(path: Path | str) -> sqlite3.Connection:
    db = ledger_path(path)
    if not db.is_file():
        raise LedgerNotFoundError(f"no ledger at {db}")
    try:
        return connect(db, readonly=True)
    except sqlite3.Error as exc:
        raise _unreadable(exc) from None


def _unreadable(exc: sqlite3.Error) -> LedgerIntegrityError:
    """A database SQLite cannot read, as a verification failure (not a traceback);
    the entry is not known, so it is #0, as in the audit."""
    return LedgerIntegrityError(0, f"unreadable ledger database: {exc}")


def ledger_key(conn: sqlite3.Connection) -> LedgerKey:
    """The ledger id and treasury key, from the genesis record (its hash recomputed)."""
    row = conn.execute("SELECT seq, record FROM entries WHERE seq = 0").fetchone()
    if row is None:
        raise LedgerIntegrityError(0, "ledger is empty (no genesis)")
    genesis = read_entry(0, row[1], "genesis")
    if genesis.encode().hash != genesis.hash or genesis.key is None:
        raise LedgerIntegrityError(0, "genesis entry altered (its hash does not match)")
    try:
        return LedgerKey(genesis.hash, bytes.fromhex(genesis.key))
    except ValueError:
        raise LedgerIntegrityError(0, "genesis treasury key is not hex") from None


def _latest(conn: sqlite3.Connection, key: LedgerKey) -> tuple[Entry, SignedCheckpoint]:
    row = conn.execute(
        "SELECT seq, record FROM entries WHERE kind = 'checkpoint' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise ProofError("no sealed block yet, so no signed checkpoint")
    entry = read_entry(int(row[0]), row[1], "checkpoint")
    if entry.sender != "treasury" or not verify_signature(
        key.treasury_key.hex(), entry.signature, signing_message(entry.tx)
    ):
        raise ProofError(f"checkpoint entry #{entry.seq}: not signed by the treasury's key")
    return entry, checkpoint_note(entry, key.ledger_id, key.treasury_key)


def latest_signed_checkpoint(path: Path | str) -> tuple[int, SignedCheckpoint, LedgerKey]:
    """The latest checkpoint entry's seq and signed note (verified), and the ledger key."""
    conn = _open(path)
    try:
        key = ledger_key(conn)
        entry, note = _latest(conn, key)
        return entry.seq, note, key
    except sqlite3.Error as exc:
        raise _unreadable(exc) from None
    finally:
        conn.close()


def prove_inclusion(
    path: Path | str, seq: int, *, checkpoint: SignedCheckpoint | None = None
) -> InclusionProof:
    """Prove entry ``seq`` is in the tree the latest signed checkpoint covers (or
    ``checkpoint``, one held elsewhere), checking that checkpoint's signature.

    Raises ProofError naming the reason when the checkpoint is not this
    ledger's or its signature fails, or the entry (or any entry before the
    checkpoint) is not the one that was signed; IndexError for no such entry;
    MarketplaceError for an entry of the open block (no checkpoint covers it).
    """
    conn = _open(path)
    try:
        key = ledger_key(conn)
        if checkpoint is None:
            entry, note = _latest(conn, key)
            cp_seq: int | None = entry.seq
        else:
            if checkpoint.checkpoint.origin != key.origin:
                raise ProofError(
                    f"the checkpoint is for {checkpoint.checkpoint.origin}, "
                    f"this ledger is {key.origin}"
                )
            checkpoint.verify(key.origin, key.treasury_key)
            note, cp_seq = checkpoint, None
        size, root = note.checkpoint.tree_size, note.checkpoint.root
        stored = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        if not 0 <= seq < max(stored, size):
            raise IndexError(f"no entry #{seq} (ledger has {stored})")
        if seq >= size:
            raise MarketplaceError(
                f"entry #{seq} is in the open block: no signed checkpoint covers it yet "
                f"(the latest covers {size} entries)"
            )
        rows = conn.execute(
            "SELECT record FROM entries WHERE seq < ? ORDER BY seq", (size,)
        ).fetchall()
    except sqlite3.Error as exc:
        raise _unreadable(exc) from None
    finally:
        conn.close()
    if len(rows) != size:
        raise ProofError(
            f"ledger truncated: the checkpoint covers {size} entries, found {len(rows)}"
        )
    for i, (record,) in enumerate(rows):
        if not isinstance(record, str):
            raise LedgerIntegrityError(i, "malformed record: not stored as text")
    tree = MerkleTree()
    tree.extend([leaf_hash(r.encode("utf-8")) for (r,) in rows])
    proof = tree.inclusion_proof(seq, size)
    leaf = tree.leaf(seq)
    try:
        verify_inclusion(seq, size, leaf, proof, root)
    except ProofError:
        raise ProofError(
            f"entry #{seq} is not what the checkpoint of {size} entries signed: its inclusion "
            "proof does not lead to the signed root (the entry, or one before the checkpoint, "
            f"was changed){_damaged([r for (r,) in rows])}"
        ) from None
    return InclusionProof(seq, size, leaf.hex(), tuple(p.hex() for p in proof), root.hex(), cp_seq)


def _damaged(records: list[str]) -> str:
    """After a failed proof, which stored entry is malformed or has a hash that does
    not match its contents (the first), or ``""`` when every record is intact on its
    own (then only the signed root tells)."""
    for i, record in enumerate(records):
        try:
            entry = read_entry(i, record, None)
            intact = entry.encode().hash == entry.hash
        except LedgerIntegrityError as exc:
            return f"; {exc}"
        except MALFORMED as exc:
            return f"; entry #{i}: unencodable record: {malformed_reason(exc)}"
        if not intact:
            return f"; entry #{i}: its hash does not match its contents"
    return ""
