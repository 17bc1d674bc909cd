"""The ``Market`` facade: a signed, hash-chained, Merkle-checkpointed SQLite ledger.

Storage is one SQLite database in WAL mode. Every write runs inside an explicit
``BEGIN IMMEDIATE`` transaction, so two writers serialize (the second waits on
the lock and then catches up with the first's entries before appending) and a
writer killed at any point leaves either the whole transaction or none of it.
A one-row ``head`` table, written in the same transaction, records the last
sequence number and hash so that truncation of the log is detected.

Each entry is a :class:`~marketplace.entries.Entry` (canonical JSON). Entries
are grouped into blocks: :meth:`Market.end_block` (or every ``block_size``
entries) appends a treasury-signed ``checkpoint`` entry holding the RFC 6962
root of every entry before it, the tree size and the simulated time. The final
block may be open (unsealed) after a crash; the audit accepts that.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from glob import escape as glob_escape
from math import isfinite
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from marketplace.canonical import JSON, canonical_json
from marketplace.entries import (
    GENESIS_PREV,
    Entry,
    SignedTransaction,
    Transaction,
    json_float,
    json_str,
    record_parts,
    signing_text,
)
from marketplace.errors import (
    LedgerIntegrityError,
    LedgerNotFoundError,
    ReadOnlyLedgerError,
    RegistryError,
    SignatureError,
    TransactionError,
)
from marketplace.keys import HAVE_SODIUM, Signer, SigningPool, public_key_hex, verify_signature
from marketplace.merkle import MerkleTree, leaf_hash, verify_inclusion
from marketplace.ratings import Ballot, aggregate_rating
from marketplace.reputation import reputation
from marketplace.rounding import largest_remainder
from marketplace.state import (
    RESERVED_KINDS,
    TREASURY,
    License,
    MarketState,
    ModelVersion,
    Params,
    PriceTerms,
    pool_account,
)

__all__ = [
    "LEDGER_FILE",
    "BulkTx",
    "InclusionProof",
    "Market",
    "ledger_path",
]

BulkTx = tuple[str, str, Mapping[str, JSON]] | tuple[str, str, Mapping[str, JSON], float]
"""One transaction for :meth:`Market.append_many`: ``(kind, sender, data)`` or
``(kind, sender, data, time)`` (without ``time``, the market's clock is read)."""

_PARALLEL_MIN = 128
"""Blocks of fewer transactions are signed in-process (helper IPC costs more)."""
_CHUNK = 16
"""Transactions validated, then signed (by the helper or here), at a time."""
_HELPER_DEPTH = 128
"""Signatures the helper may owe before chunks are signed here instead: deep
enough that it does not run dry while this process signs a chunk itself."""
_HELPER_SLACK = 64
"""Signatures the helper may still owe when this process has validated the
last transaction of a run (it inserts the staged rows meanwhile)."""

logger = logging.getLogger("fedmarket.ledger")
_sha256 = hashlib.sha256

LEDGER_FILE = "ledger.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"""


_STAGING_SUFFIX = ".creating"


def _remove_db_files(db: Path) -> None:
    """Delete an SQLite database and its WAL, shared-memory and journal files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db}{suffix}")


def _remove_stale_staging(db: Path) -> None:
    """Delete staging files left by creators of ``db`` that were killed."""
    for staging in db.parent.glob(f".{glob_escape(db.name)}.*{_STAGING_SUFFIX}"):
        pid = staging.name[len(db.name) + 2 : -len(_STAGING_SUFFIX)]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            _remove_db_files(staging)
        except PermissionError:
            pass  # alive, owned by someone else


def _publish(staging: Path, db: Path) -> None:
    """Move the finished ``staging`` database to ``db``, never replacing one."""
    try:
        os.link(staging, db)  # atomic, and fails if db appeared meanwhile
    except FileExistsError:
        raise FileExistsError(f"ledger already exists: {db}") from None
    except OSError:  # a file system without hard links
        if db.exists():
            raise FileExistsError(f"ledger already exists: {db}") from None
        os.replace(staging, db)
        return
    os.unlink(staging)


def ledger_path(path: Path | str) -> Path:
    """``path`` itself if it names a ``.db`` file, else ``path / "ledger.db"``."""
    p = Path(path)
    return p if p.suffix == ".db" else p / LEDGER_FILE


MALFORMED = (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError)
"""What parsing or applying a malformed stored record raises (``seq`` of ``1e999`` is
an ``OverflowError``, a record nested 100,000 deep a ``RecursionError``)."""


def malformed_reason(exc: BaseException) -> str:
    """A short reason for a record that raised one of :data:`MALFORMED`."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, OverflowError):
        return "a number out of range"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """Open the SQLite ledger with WAL and explicit transactions.

    A read-only connection is a ``file:`` URI with the path percent-escaped, so
    a run directory named ``run#1`` or ``run?x`` opens the file it names.
    """
    if readonly:
        uri = f"file:{quote(os.fspath(path))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=60)
    else:
        conn = sqlite3.connect(path, isolation_level=None, timeout=60)
        # 16 KiB pages (effective for a new file only): entries are ~0.5 KB
        # records appended in key order, and bigger pages roughly halve the
        # per-row cost of inserting and checkpointing them (measured by
        # benchmarks/ledger.py: 4.6 -> 2.4 us per row on the CI machine).
        conn.execute("PRAGMA page_size=16384")
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a killed process in WAL mode (only an OS
        # crash/power loss may drop the last commits), and much faster than FULL.
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """An RFC 9162 inclusion proof of one entry, hex encoded."""

    seq: int
    tree_size: int
    leaf_hash: str
    path: tuple[str, ...]
    root: str
    checkpoint_seq: int | None
    """The signed checkpoint entry whose root this is; ``None`` for the open block."""

    def verify(self) -> None:
        """Raise :class:`~marketplace.errors.ProofError` if the proof is invalid."""
        verify_inclusion(
            self.seq,
            self.tree_size,
            bytes.fromhex(self.leaf_hash),
            [bytes.fromhex(p) for p in self.path],
            bytes.fromhex(self.root),
        )


class Market:
    """All marketplace economics, as signed and nonce-checked ledger transactions.

    Use :meth:`create` or :meth:`open`; every mutating method appends one (or a
    few) entries and raises a :class:`~marketplace.errors.MarketplaceError`
    subclass when the transaction is refused, in which case nothing is appended.
    """

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        readonly: bool,
        clock: Callable[[], float] | None,
    ) -> None:
        self.path = path
        self._conn = conn
        self._readonly = readonly
        self._clock = clock
        self._state = MarketState()
        self._tree = MerkleTree()
        self._head = GENESIS_PREV
        self._seed = 0
        self._block_size: int | None = None
        self._block_start = 0
        self._signers: dict[str, Signer] = {}
        self._pending: list[tuple[int, str, str]] = []
        self._flushed = 0  # leading _pending rows already INSERTed (not yet committed)
        self._depth = 0
        self._closed = False
        self._pool: SigningPool | None = None
        self._json_strs: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path,
        *,
        seed: int,
        genesis: Mapping[str, JSON],
        clock: Callable[[], float] = lambda: 0.0,
        block_size: int | None = None,
    ) -> Market:
        """Create ``ledger.db`` (``path`` is a run directory or a ``.db`` file) and
        write the genesis entry, which registers the treasury.

        ``genesis`` must hold ``scenario_hash``; ``genesis["params"]`` may
        override :class:`~marketplace.state.Params` (unknown names: ValueError).
        """
        db = ledger_path(path)
        if "scenario_hash" not in genesis:
            raise ValueError("genesis must hold 'scenario_hash'")
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        raw_params = genesis.get("params", {})
        if not isinstance(raw_params, Mapping):
            raise ValueError("genesis['params'] must be a mapping")
        params = Params.from_mapping(raw_params)
        if db.exists():
            raise FileExistsError(f"ledger already exists: {db}")
        db.parent.mkdir(parents=True, exist_ok=True)
        # The schema and the genesis entry are written to a staging file that is
        # linked into place only once complete: a process killed while creating
        # leaves either no ledger or one that verifies, never an empty database
        # that no auditor could open.
        _remove_stale_staging(db)
        staging = db.with_name(f".{db.name}.{os.getpid()}{_STAGING_SUFFIX}")
        _remove_db_files(staging)
        conn = connect(staging, readonly=False)
        market = cls(db, conn, readonly=False, clock=clock)
        try:
            conn.executescript(_SCHEMA)
            market._seed = seed
            market._block_size = block_size
            data: dict[str, JSON] = dict(genesis)
            data.update(
                seed=seed,
                params=params.to_json(),
                block_size=block_size,
                treasury_public_key=public_key_hex(market._key(TREASURY)),
            )
            market._append("genesis", TREASURY, data)
            # Closing the only connection checkpoints the WAL into the file and
            # deletes it, so the staging file alone holds the whole ledger.
            conn.close()
            _publish(staging, db)
        except BaseException:
            market.close()
            _remove_db_files(staging)
            raise
        market._conn = connect(db, readonly=False)
        logger.info("created ledger %s (seed=%d, block_size=%s)", db, seed, block_size)
        return market

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        readonly: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> Market:
        """Open an existing ledger and replay it into memory (no audit; see
        :func:`marketplace.audit.audit_ledger` for a from-scratch verification)."""
        db = ledger_path(path)
        if not db.is_file():
            raise LedgerNotFoundError(f"no ledger at {db}")
        try:
            conn = connect(db, readonly=readonly)
        except sqlite3.Error as exc:
            raise LedgerIntegrityError(0, f"cannot open the ledger database: {exc}") from None
        market = cls(db, conn, readonly=readonly, clock=clock)
        try:
            market._catch_up()
        except sqlite3.Error as exc:
            conn.close()
            reason = f"unreadable ledger database: {exc}"
            raise LedgerIntegrityError(market._state.size, reason) from None
        except BaseException:
            conn.close()
            raise
        return market

    def close(self) -> None:
        """Flush and close the database; a writer leaves it out of WAL mode."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if not self._readonly:
            self._leave_wal()
        self._conn.close()

    def _leave_wal(self) -> None:
        """Switch a closing ledger to a rollback journal (``journal_mode=DELETE``).

        This folds the WAL into ``ledger.db`` and deletes ``-wal`` and ``-shm``,
        so the finished file verifies from read-only media (a WAL database needs
        a writable ``-shm`` beside it). Another open connection keeps WAL on; the
        last writer to close switches it.
        """
        try:
            self._conn.execute("PRAGMA busy_timeout=100")
            self._conn.execute("PRAGMA journal_mode=DELETE").fetchall()
        except sqlite3.Error as exc:
            logger.debug("ledger %s stays in WAL mode: %s", self.path, exc)

    def __enter__(self) -> Market:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------
    def _key(self, account: str) -> Ed25519PrivateKey:
        return self._signer(account).key

    def _signer(self, account: str) -> Signer:
        signer = self._signers.get(account)
        if signer is None:
            signer = self._signers[account] = Signer.derive(self._seed, account)
        return signer

    def _now(self) -> float:
        if self._clock is None:
            return self._state.last_time
        return float(self._clock())

    def _ingest(self, entry: Entry, record: str) -> None:
        """Apply an already-stored entry (trusted: written by a Market)."""
        block = self._state.block
        self._state.apply(entry.tx)
        if entry.kind == "genesis":
            self._seed = int(entry.data["seed"])  # type: ignore[arg-type]
            bs = entry.data.get("block_size")
            self._block_size = bs if isinstance(bs, int) else None
        if self._state.block != block:
            self._block_start = entry.seq + 1
        self._tree.append(leaf_hash(record.encode("utf-8")))
        self._head = entry.hash

    def _catch_up(self) -> None:
        """Replay entries other writers appended since we last looked."""
        rows = self._conn.execute(
            "SELECT record FROM entries WHERE seq >= ? ORDER BY seq", (self._state.size,)
        ).fetchall()
        for (record,) in rows:
            seq = self._state.size
            try:
                entry = Entry.from_record(record)
            except MALFORMED as exc:
                reason = f"malformed record: {malformed_reason(exc)}"
                raise LedgerIntegrityError(seq, reason) from None
            if entry.seq != seq or entry.prev_hash != self._head:
                raise LedgerIntegrityError(seq, "does not extend the chain; run an audit")
            try:
                self._ingest(entry, record)
            except (TransactionError, *MALFORMED) as exc:
                reason = f"invalid transaction: {malformed_reason(exc)}"
                raise LedgerIntegrityError(seq, reason) from None

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._conn.execute("SELECT seq FROM head WHERE id = 0").fetchone()
            if row is not None and int(row[0]) + 1 != self._state.size:
                self._catch_up()
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _commit(self) -> None:
        try:
            if self._pending:
                self._flush_pending()
                self._conn.execute(
                    "INSERT OR REPLACE INTO head (id, seq, hash) VALUES (0, ?, ?)",
                    (self._state.size - 1, self._head),
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback_and_reload()
            raise
        finally:
            self._pending.clear()
            self._flushed = 0

    def _flush_pending(self) -> None:
        """INSERT the staged rows not inserted yet, inside the open transaction.

        Called at commit, and by bulk appends while they wait for the signing
        helper (the rows are then written in time that would otherwise be
        idle). Inserted rows are durable only once the transaction commits;
        :meth:`_restore` deletes them again when a bulk append is refused.
        """
        rows = self._pending[self._flushed :] if self._flushed else self._pending
        if rows:
            self._conn.executemany("INSERT INTO entries (seq, kind, record) VALUES (?, ?, ?)", rows)
            self._flushed = len(self._pending)

    def _rollback_and_reload(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")
        self._pending.clear()
        self._flushed = 0
        self._state = MarketState()
        self._tree = MerkleTree()
        self._head = GENESIS_PREV
        self._block_start = 0
        self._catch_up()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group appends into one SQLite transaction (one commit, much faster).

        Entries appended inside are durable once the ``with`` block exits. A
        refused transaction inside does not undo the ones before it; an I/O
        error rolls the whole batch back and reloads the ledger.
        """
        self._writable()
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        try:
            yield
        except sqlite3.Error:
            self._depth = 0
            self._rollback_and_reload()
            raise
        except BaseException:
            self._depth = 0
            self._commit()
            raise
        self._depth = 0
        self._commit()

    def _writable(self) -> None:
        if self._readonly:
            raise ReadOnlyLedgerError(f"ledger {self.path} was opened read-only")
        if self._closed:
            raise ReadOnlyLedgerError(f"ledger {self.path} is closed")

    def _append(
        self,
        kind: str,
        sender: str,
        data: Mapping[str, JSON],
        *,
        signed: SignedTransaction | None = None,
        time: float | None = None,
    ) -> Entry:
        if not self._depth:
            with self.batch():
                return self._append(kind, sender, data, signed=signed, time=time)
        if self._closed:
            self._writable()
        state = self._state
        if signed is None:
            when = self._now() if time is None else time
            tx = Transaction(kind, sender, state.next_nonce(sender), when, dict(data))
        else:
            tx = signed.tx
        # Every field is JSON-encoded exactly once and reused for the signed
        # message, the hashed body and the stored record (entries.record_parts).
        data_json = canonical_json(tx.data)  # fails early on NaN / unencodable data
        kind_j, sender_j, time_j = json_str(tx.kind), json_str(tx.sender), json_float(tx.time)
        message = signing_text(kind_j, tx.nonce, sender_j, time_j, data_json).encode("utf-8")
        if signed is not None:
            # Externally signed: never trusted, verified against the key
            # registered on the ledger before anything is applied.
            public = state.public_key_for(tx)
            if not verify_signature(public, signed.signature, message):
                raise SignatureError(
                    "signature does not verify", account=tx.sender, tx=tx.describe()
                )
        seq, block = state.size, state.block
        state.apply(tx)  # validates (account, nonce, funds, ...) before mutating
        if signed is not None:
            signature = signed.signature
        else:
            # Signed here with the key this Market derived for ``sender``: not
            # re-verified on the hot path. Ed25519 signing is deterministic and
            # the public key registered on the ledger for ``sender`` *is* this
            # key's (register_participant writes it; the treasury's is in
            # genesis), so the verification could only succeed; the audit
            # re-verifies every signature anyway. (Markets opened on a ledger
            # whose accounts registered foreign keys sign with the derived key
            # too, exactly as before; the audit would flag such an entry.)
            signature = self._signer(tx.sender).sign(message).hex()
        prev = self._head
        head, tail = record_parts(
            seq, block, kind_j, tx.nonce, prev, sender_j, signature, time_j, data_json
        )
        digest = _sha256(bytes.fromhex(prev) + (head + tail).encode("utf-8")).hexdigest()
        record = f'{head},"hash":"{digest}"{tail}'
        self._tree.append(_sha256(b"\x00" + record.encode("utf-8")).digest())
        self._head = digest
        self._pending.append((seq, kind, record))
        entry = Entry(
            seq, block, tx.kind, tx.sender, tx.nonce, tx.time, tx.data, signature, prev, digest
        )
        if state.block != block:
            self._block_start = seq + 1
        elif (
            self._block_size is not None
            and kind != "genesis"
            and state.size - self._block_start >= self._block_size
        ):
            self.end_block()
        return entry

    # -- bulk appends --------------------------------------------------------------
    def append_many(self, txs: Sequence[BulkTx], *, parallel: bool | None = None) -> list[Entry]:
        """Append many transactions, all or nothing, in one SQLite transaction.

        Each item is ``(kind, sender, data)`` or ``(kind, sender, data, time)``,
        signed by this market's derived key of ``sender`` exactly as the single
        methods (:meth:`transfer`, :meth:`record`, ...) would: nonces are
        assigned in order, every transaction is validated (accounts, nonces,
        funds, ...) against the state left by the ones before it, blocks are
        sealed with checkpoints at the same places (stamped with the time of
        the entry that fills the block when times are given, else the clock),
        and the entries (hence the head hash) are byte-identical to appending
        them one by one with the clock reading each ``time``.

        If any transaction is refused, nothing of the batch is applied (entries
        appended earlier in an enclosing :meth:`batch` stay) and the error
        names the transaction (``kind by sender #nonce``); restoring the state
        replays the ledger, so refusals cost O(ledger), successes do not.

        ``parallel`` (default: automatic when libsodium is available, the
        machine has several cores and a block holds at least 128 transactions)
        has a persistent helper process sign chunks of each block while this
        process validates the next ones, signs whatever the helper has no room
        for and hash-chains; signatures are deterministic, so where they are
        computed changes no byte. The helper is stopped by :meth:`close` (or
        at interpreter exit).
        """
        self._writable()
        items = list(txs)
        for i, t in enumerate(items):
            if len(t) not in (3, 4):
                raise ValueError(f"transaction {i}: expected (kind, sender, data[, time])")
            if t[0] in ("genesis", "checkpoint"):
                raise ValueError(f"transaction {i}: {t[0]!r} entries cannot be bulk-appended")
        if not items:
            return []
        if parallel is None and not (HAVE_SODIUM and (os.cpu_count() or 1) > 1):
            parallel = False
        out: list[Entry] = []
        with self.batch():
            keep = len(self._pending)
            try:
                i, n = 0, len(items)
                while i < n:
                    stop = n
                    bs = self._block_size
                    if bs is not None:
                        room = bs - (self._state.size - self._block_start)
                        stop = min(n, i + max(1, room))
                    self._append_segment(items, i, stop, out, parallel)
                    i = stop
                    if bs is not None and self._state.size - self._block_start >= bs:
                        # Sealed at the time of the last entry when times are
                        # explicit (as a clock advanced per append would read).
                        last = items[stop - 1]
                        self._seal(float(last[3]) if len(last) == 4 else None)
            except BaseException:
                # Refused (or interrupted): undo the whole batch, in memory too.
                self._restore(keep)
                raise
        return out

    def _restore(self, keep: int) -> None:
        """Forget pending entries after the first ``keep`` and rebuild the state
        from the database plus those (inside the open write transaction)."""
        if self._flushed:
            # Rows inserted early (still inside the open transaction) go
            # again; the kept ones are re-staged and inserted at commit.
            self._conn.execute("DELETE FROM entries WHERE seq >= ?", (self._pending[0][0],))
            self._flushed = 0
        del self._pending[keep:]
        records = [record for (_, _, record) in self._pending]
        self._state = MarketState()
        self._tree = MerkleTree()
        self._head = GENESIS_PREV
        self._block_start = 0
        self._catch_up()
        for record in records:
            self._ingest(Entry.from_record(record), record)

    def _signing_pool(self) -> SigningPool:
        pool = self._pool
        if pool is None or pool.owner_pid != os.getpid() or not pool.alive:
            # (A forked child must not share its parent's helper pipes; a
            # helper that died, e.g. killed, is replaced.)
            if pool is not None:
                pool.close()
            pool = self._pool = SigningPool()
        return pool

    def _append_segment(
        self, items: list[BulkTx], lo: int, hi: int, out: list[Entry], parallel: bool | None
    ) -> None:
        """Append ``items[lo:hi]``, none of which seals a block."""
        # No load probing is needed: the helper only gets the chunks it has
        # room for (see _append_run), so a busy core just means it signs less.
        use = parallel is not False and hi - lo >= _PARALLEL_MIN
        self._append_run(items, lo, hi, out, self._signing_pool() if use else None)

    def _append_run(
        self, items: list[BulkTx], lo: int, hi: int, out: list[Entry], pool: SigningPool | None
    ) -> None:
        """Validate, sign and hash-chain ``items[lo:hi]`` (none of which seals a block).

        Streams in chunks of ``_CHUNK``: each chunk is validated and applied in
        order, then signed either by the helper ``pool`` (when it is owed fewer
        than ``_HELPER_DEPTH`` signatures, i.e. it has room) or here, and every
        chunk whose signatures are in is hash-chained and staged in order. So
        the helper takes as much of the signing as it keeps up with, whatever
        the load on its core. Once every transaction is validated, this
        process inserts the staged rows while it waits for the helper's last
        chunks (the commit then has little left to write).
        """
        state = self._state
        nonces = state.nonces
        apply = state.apply
        strs = self._json_strs
        encode = canonical_json
        signer_of = self._signer
        float_repr = float.__repr__
        block = state.block
        seq = state.size
        prev = self._head
        prev_bytes = bytes.fromhex(prev)
        tree_extend = self._tree.extend
        pending = self._pending
        append_out = out.append
        # Chunks validated but not yet chained: (txs, parts, signatures or ticket).
        queue: collections.deque[
            tuple[list[Transaction], list[tuple[str, str, str, str]], list[bytes] | int]
        ] = collections.deque()

        def chain(
            txs: list[Transaction], parts: list[tuple[str, str, str, str]], sigs: list[bytes]
        ) -> None:
            nonlocal seq, prev, prev_bytes
            leaves = []
            for tx, (kind_j, sender_j, time_j, data_json), raw_sig in zip(
                txs, parts, sigs, strict=True
            ):
                sig = raw_sig.hex()
                head = f'{{"block":{block},"data":{data_json}'
                tail = (
                    f',"kind":{kind_j},"nonce":{tx.nonce},"prev_hash":"{prev}",'
                    f'"sender":{sender_j},"seq":{seq},"signature":"{sig}",'
                    f'"time":{time_j}}}'
                )
                raw = _sha256(prev_bytes + (head + tail).encode("utf-8")).digest()
                digest = raw.hex()
                record = f'{head},"hash":"{digest}"{tail}'
                leaves.append(_sha256(b"\x00" + record.encode("utf-8")).digest())
                pending.append((seq, tx.kind, record))
                append_out(
                    Entry(
                        seq,
                        block,
                        tx.kind,
                        tx.sender,
                        tx.nonce,
                        tx.time,
                        tx.data,
                        sig,
                        prev,
                        digest,
                    )
                )
                prev, prev_bytes = digest, raw
                seq += 1
            tree_extend(leaves)

        try:
            for start in range(lo, hi, _CHUNK):
                stop = min(hi, start + _CHUNK)
                # Validate + apply in order; encode each signed message once.
                txs: list[Transaction] = []
                parts: list[tuple[str, str, str, str]] = []
                messages: list[bytes] = []
                signers: list[Signer] = []
                for j in range(start, stop):
                    t = items[j]
                    kind, sender, data = t[0], t[1], t[2]
                    when = float(t[3]) if len(t) == 4 else self._now()
                    tx = Transaction(kind, sender, nonces.get(sender, 0), when, dict(data))
                    try:
                        data_json = encode(tx.data)
                        if not isfinite(when):
                            json_float(when)  # raises the usual error
                        time_j = float_repr(when)  # = json_float(when), inline
                    except ValueError as exc:
                        raise ValueError(f"{tx.describe()}: {exc}") from exc
                    apply(tx)  # validates (account, nonce, funds, ...) before mutating
                    kind_j = strs.get(kind)
                    if kind_j is None:
                        kind_j = strs[kind] = json_str(kind)
                    sender_j = strs.get(sender)
                    if sender_j is None:
                        sender_j = strs[sender] = json_str(sender)
                    messages.append(
                        f'{{"data":{data_json},"kind":{kind_j},"nonce":{tx.nonce},'
                        f'"sender":{sender_j},"time":{time_j}}}'.encode()
                    )
                    txs.append(tx)
                    parts.append((kind_j, sender_j, time_j, data_json))
                    signers.append(signer_of(sender))
                # Sign: the helper if it has room, else here. Near the end of
                # the run the helper only gets what it can finish while this
                # process handles the rest (signing one costs this process
                # about 1.5 helper signatures' time) and inserts the rows.
                owed = pool.owed() + stop - start if pool is not None else 0
                if pool is not None and owed <= min(
                    _HELPER_DEPTH, (hi - stop) * 3 // 2 + _HELPER_SLACK
                ):
                    ticket = pool.submit_lists([s.secret for s in signers], messages)
                    queue.append((txs, parts, ticket))
                else:
                    queue.append(
                        (txs, parts, [s.sign(m) for s, m in zip(signers, messages, strict=True)])
                    )
                # Chain every chunk whose signatures are in, in order.
                while queue:
                    txs, parts, sigs = queue[0]
                    if isinstance(sigs, int):
                        assert pool is not None
                        if not pool.ready(sigs):
                            break
                        sigs = pool.result(sigs)
                    queue.popleft()
                    chain(txs, parts, sigs)
            while queue:
                txs, parts, sigs = queue[0]
                if isinstance(sigs, int):
                    assert pool is not None
                    if not pool.ready(sigs):
                        # Everything is validated: insert the rows chained so
                        # far while the helper finishes, instead of idling.
                        self._flush_pending()
                    sigs = pool.result(sigs)
                queue.popleft()
                chain(txs, parts, sigs)
            self._head = prev
        finally:
            # On an error, collect what the helper still owes so its protocol
            # stays in step; if even that fails, stop it (a new one starts).
            tickets = [sigs for _, _, sigs in queue if isinstance(sigs, int)]
            if tickets:
                assert pool is not None
                try:
                    for ticket in tickets:
                        pool.result(ticket)
                except BaseException:
                    pool.close()
                    self._pool = None
                    raise

    # -- identities and signing --------------------------------------------------
    @property
    def head_hash(self) -> str:
        """Hash of the last entry (hex)."""
        return self._head

    @property
    def size(self) -> int:
        """Number of entries."""
        return self._state.size

    @property
    def seed(self) -> int:
        """The scenario seed keys are derived from."""
        return self._seed

    @property
    def state(self) -> MarketState:
        """The derived market state (read it, do not mutate it)."""
        return self._state

    @property
    def params(self) -> Params:
        """Market parameters fixed at genesis."""
        return self._state.params

    def public_key(self, account: str) -> str:
        """The registered public key of ``account`` (hex)."""
        acct = self._state.accounts.get(account)
        return acct.public_key if acct is not None else self._signer(account).public_hex

    def sign(
        self,
        kind: str,
        sender: str,
        data: Mapping[str, JSON],
        *,
        nonce: int | None = None,
        time: float | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> SignedTransaction:
        """Build and sign a transaction as ``sender`` would (for :meth:`submit`)."""
        tx = Transaction(
            kind,
            sender,
            self._state.next_nonce(sender) if nonce is None else nonce,
            self._now() if time is None else time,
            dict(data),
        )
        message = tx.signing_bytes()
        signature = key.sign(message) if key is not None else self._signer(sender).sign(message)
        return SignedTransaction(tx, signature.hex())

    def submit(self, signed: SignedTransaction) -> Entry:
        """Append an externally signed transaction after checking account, signature
        and nonce (in that order)."""
        self._writable()
        return self._append(signed.tx.kind, signed.tx.sender, signed.tx.data, signed=signed)

    # -- accounts and tokens -----------------------------------------------------
    def register_participant(
        self, account: str, *, role: str, meta: Mapping[str, JSON] | None = None
    ) -> Entry:
        """Register ``account`` with its derived public key (self-signed, nonce 0)."""
        data: dict[str, JSON] = {
            "role": role,
            "public_key": self._signer(account).public_hex,
            "meta": dict(meta or {}),
        }
        return self._append("register", account, data)

    def mint(self, to: str, amount: int, *, reason: str) -> Entry:
        """Treasury mints ``amount`` base units to ``to``."""
        return self._append("mint", TREASURY, {"to": to, "amount": amount, "reason": reason})

    def transfer(self, sender: str, to: str, amount: int, *, memo: str = "") -> Entry:
        """Move ``amount`` from ``sender`` to ``to`` (overdraft refused)."""
        return self._append("transfer", sender, {"to": to, "amount": amount, "memo": memo})

    def burn(self, account: str, amount: int) -> Entry:
        """Destroy ``amount`` of ``account``'s balance."""
        return self._append("burn", account, {"amount": amount})

    def stake(self, account: str, amount: int) -> Entry:
        """Lock ``amount`` of ``account``'s balance as stake."""
        return self._append("stake", account, {"amount": amount})

    def unstake(self, account: str, amount: int) -> Entry:
        """Start unbonding ``amount``; it can be withdrawn after ``params.unstake_delay``."""
        return self._append("unstake", account, {"amount": amount})

    def withdraw(self, account: str) -> Entry:
        """Return every matured unbonding amount to the balance."""
        return self._append("withdraw", account, {})

    def slash(self, account: str, amount: int, *, reason: str) -> Entry:
        """Burn ``amount`` of ``account``'s stake by a mechanism decision.

        Locked stake goes first, then unbonding stake. When less than ``amount``
        remains, what remains is burned and the difference is recorded as the
        account's shortfall (``state.slash_shortfall(account)``); nothing raises.
        """
        return self._append(
            "slash", TREASURY, {"account": account, "amount": amount, "reason": reason}
        )

    def balance(self, account: str) -> int:
        """Spendable balance in base units."""
        return self._state.balance(account)

    def staked(self, account: str) -> int:
        """Locked stake in base units (excluding unbonding)."""
        return self._state.staked(account)

    @property
    def supply(self) -> int:
        """Minted minus burned."""
        return self._state.supply

    # -- federated learning events -----------------------------------------------
    def record_contribution(
        self,
        *,
        round: int,
        client: str,
        update_hash: str,
        num_examples: int,
        epsilon: float | None,
        metrics: Mapping[str, float],
    ) -> Entry:
        """The client signs its update's hash, size, privacy cost and local metrics."""
        data: dict[str, JSON] = {
            "round": round,
            "update_hash": update_hash,
            "num_examples": num_examples,
            "epsilon": epsilon,
            "metrics": dict(metrics),
        }
        return self._append("contribution", client, data)

    def reject_contribution(self, *, round: int, client: str, reason: str) -> Entry:
        """The platform records that it refused ``client``'s update."""
        data: dict[str, JSON] = {"round": round, "client": client, "reason": reason}
        return self._append("contribution_rejected", TREASURY, data)

    def record_quality(self, *, round: int, client: str, score: float) -> Entry:
        """A contribution quality score in [0, 1]; feeds reputation."""
        data: dict[str, JSON] = {"round": round, "client": client, "score": score}
        return self._append("quality", TREASURY, data)

    def record(self, kind: str, data: Mapping[str, JSON]) -> Entry:
        """A platform-signed event (``round_started``, ...); reserved kinds are refused."""
        if kind in RESERVED_KINDS:
            raise ValueError(f"{kind!r} is a reserved entry kind; use its own method")
        return self._append(kind, TREASURY, data)

    def reward(self, *, round: int, allocations: Mapping[str, int], mechanism: str) -> list[Entry]:
        """Mint each (non-zero) allocation under the emission schedule, in account order."""
        out: list[Entry] = []
        with self.batch():
            for account in sorted(allocations):
                amount = allocations[account]
                if amount == 0:
                    continue
                data: dict[str, JSON] = {
                    "round": round,
                    "to": account,
                    "amount": amount,
                    "mechanism": mechanism,
                }
                out.append(self._append("reward", TREASURY, data))
        return out

    # -- model registry and licenses ---------------------------------------------
    def register_model_version(
        self,
        *,
        round: int,
        parent: str | None,
        artifact_sha256: str,
        metrics: Mapping[str, float],
        contributors: Mapping[str, float],
        prices: Mapping[str, PriceTerms] | None = None,
        imported: Mapping[str, JSON] | None = None,
    ) -> str:
        """Register a model version; returns its id (``v0001``, ...). ``imported``
        describes a model not trained in the run (a Hub import); it is signed with
        the entry and kept on :class:`ModelVersion`."""
        version = f"v{len(self._state.versions) + 1:04d}"
        data: dict[str, JSON] = {
            "version": version,
            "round": round,
            "parent": parent,
            "artifact_sha256": artifact_sha256,
            "metrics": dict(metrics),
            "contributors": dict(contributors),
        }
        if prices is not None:
            data["prices"] = {k: v.to_json() for k, v in prices.items()}
        if imported is not None:
            data["imported"] = imported
        self._append("model_version", TREASURY, data)
        return version

    def set_price_list(self, version: str, prices: Mapping[str, PriceTerms]) -> Entry:
        """Set the license price list of ``version`` (replaces the previous one)."""
        data: dict[str, JSON] = {
            "version": version,
            "prices": {k: v.to_json() for k, v in prices.items()},
        }
        return self._append("price_list", TREASURY, data)

    def buy_license(self, buyer: str, version: str, license_type: str) -> str:
        """Pay the price into the version's revenue pool; returns the license id."""
        self._append("license_purchase", buyer, {"version": version, "license_type": license_type})
        return f"lic-{len(self._state.licenses):06d}"

    def use_license(self, buyer: str, license_id: str, *, units: int = 1) -> Entry:
        """Meter ``units`` uses; refused when expired, exhausted or not the buyer's."""
        return self._append("license_use", buyer, {"license": license_id, "units": units})

    def license(self, license_id: str) -> License:
        """A purchased license's current state."""
        lic = self._state.licenses.get(license_id)
        if lic is None:
            raise KeyError(license_id)
        return lic

    def distribute_revenue(self, version: str) -> list[Entry]:
        """Pay out the version's revenue pool: the platform fee to the treasury,
        the rest to contributors by recorded share (largest remainder)."""
        mv = self.version(version)
        pool = self._state.balance(pool_account(version))
        fee = pool * self.params.platform_fee_bps // 10_000
        shares = {a: x for a, x in largest_remainder(pool - fee, mv.contributors).items() if x > 0}
        payouts: dict[str, int] = dict(shares)
        rest = pool - sum(shares.values())
        if rest:
            payouts[TREASURY] = payouts.get(TREASURY, 0) + rest
        out: list[Entry] = []
        with self.batch():
            for account in sorted(payouts):
                data: dict[str, JSON] = {
                    "version": version,
                    "to": account,
                    "amount": payouts[account],
                    "fee": account == TREASURY,
                }
                out.append(self._append("revenue_payout", TREASURY, data))
        return out

    def version(self, version: str) -> ModelVersion:
        """A registered model version."""
        mv = self._state.versions.get(version)
        if mv is None:
            raise RegistryError(
                f"unknown model version {version!r}", account=TREASURY, tx="registry lookup"
            )
        return mv

    def versions(self) -> list[ModelVersion]:
        """All model versions in registration order."""
        return list(self._state.versions.values())

    def find_artifact(self, artifact_sha256: str) -> list[ModelVersion]:
        """Versions whose artifact hash equals ``artifact_sha256``."""
        return [v for v in self._state.versions.values() if v.artifact_sha256 == artifact_sha256]

    # -- votes and reputation ----------------------------------------------------
    def vote(self, voter: str, version: str, score: float) -> Entry:
        """Rate ``version`` 0-5; one vote per voter per version, eligibility checked."""
        return self._append("vote", voter, {"version": version, "score": score})

    def reputation(self, account: str, *, now: float | None = None) -> float:
        """Decayed reputation derived from the ledger (see :mod:`marketplace.reputation`)."""
        return reputation(self._state, account, now=now)

    def rating(
        self, version: str, *, rule: str = "mean", params: Mapping[str, float] | None = None
    ) -> float | None:
        """Aggregate rating of ``version`` under the named rule; ``None`` without votes.

        ``params`` are the rule's parameters (``{"kappa": 0.6}`` for ``yuma``);
        ``yuma`` raises ``ValueError`` when no voter of the version has stake.
        """
        self.version(version)
        votes = self._state.votes.get(version, {})
        if not votes:
            return None
        ballots = [
            Ballot(v.voter, v.score, self.staked(v.voter), self.reputation(v.voter))
            for v in sorted(votes.values(), key=lambda v: v.voter)
        ]
        return aggregate_rating(rule, ballots, params)

    # -- blocks, checkpoints and proofs ------------------------------------------
    def end_block(self) -> None:
        """Seal the current block with a treasury-signed checkpoint (no-op if empty)."""
        self._seal(None)

    def _seal(self, time: float | None) -> None:
        if self._state.size == self._block_start:
            return
        data: dict[str, JSON] = {
            "block": self._state.block,
            "tree_size": self._state.size,
            "root": self._tree.root().hex(),
        }
        self._append("checkpoint", TREASURY, data, time=time)

    def root(self, size: int | None = None) -> str:
        """Merkle root (hex) of the first ``size`` entries."""
        return self._tree.root(size).hex()

    def checkpoints(self) -> list[Entry]:
        """Every checkpoint entry, oldest first."""
        rows = self._conn.execute(
            "SELECT record FROM entries WHERE kind = 'checkpoint' ORDER BY seq"
        ).fetchall()
        return [Entry.from_record(r) for (r,) in rows]

    def inclusion_proof(self, seq: int, *, tree_size: int | None = None) -> InclusionProof:
        """O(log n) proof that entry ``seq`` is in the tree of ``tree_size`` entries.

        By default the tree is the one signed by the first checkpoint after the
        entry; for an entry of the open block, the current (unsigned) tree.
        """
        if not 0 <= seq < self.size:
            raise IndexError(f"no entry #{seq} (ledger has {self.size})")
        checkpoint: int | None = None
        if tree_size is None:
            row = self._conn.execute(
                "SELECT seq FROM entries WHERE kind = 'checkpoint' AND seq > ? "
                "ORDER BY seq LIMIT 1",
                (seq,),
            ).fetchone()
            if row is not None:
                checkpoint = int(row[0])
                tree_size = checkpoint
            else:
                tree_size = self.size
        path = self._tree.inclusion_proof(seq, tree_size)
        return InclusionProof(
            seq,
            tree_size,
            self._tree.leaf(seq).hex(),
            tuple(p.hex() for p in path),
            self._tree.root(tree_size).hex(),
            checkpoint,
        )

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[str]:
        """O(log n) proof that the tree of ``size2`` entries extends that of ``size1``."""
        return [p.hex() for p in self._tree.consistency_proof(size1, size2)]

    # -- reading -----------------------------------------------------------------
    def entries(self, start: int = 0, stop: int | None = None) -> list[Entry]:
        """Entries ``start <= seq < stop`` read back from the database."""
        end = self.size if stop is None else stop
        rows = self._conn.execute(
            "SELECT record FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)
        ).fetchall()
        return [Entry.from_record(r) for (r,) in rows]

    def entry(self, seq: int) -> Entry:
        """One entry by sequence number."""
        found = self.entries(seq, seq + 1)
        if not found:
            raise IndexError(f"no entry #{seq} (ledger has {self.size})")
        return found[0]
