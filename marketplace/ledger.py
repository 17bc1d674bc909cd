"""The ``Market`` facade: a signed, hash-chained, Merkle-checkpointed SQLite ledger.

Storage is one SQLite database in WAL mode. Appends are staged in memory and
written in one explicit ``BEGIN IMMEDIATE`` transaction that is committed when
the block is sealed (:meth:`Market.end_block`, or every ``block_size``
entries), at :meth:`Market.flush`, at the end of a :meth:`Market.batch` and at
:meth:`Market.close`; after each sealed block the WAL is checkpointed into
``ledger.db`` itself. A writer therefore holds the ledger for the length of
its open block (a second writer waits), and a writer killed at any point
leaves every committed block and nothing half-written: at most the open
block is lost. A one-row ``head`` table, written in the same transaction,
records the last sequence number and hash so that truncation is detected.

Each entry is a :class:`~marketplace.entries.Entry` (canonical JSON) signed by
its sender with a key from the :class:`~marketplace.keyring.Keyring` (never
stored in the run directory) and bound to this ledger's id (the genesis
entry's hash) and the sender's nonce. A sealed block ends with a
treasury-signed ``checkpoint`` entry holding the RFC 6962 root of every entry
before it, the tree size, and the treasury's signature of that tree head as a
C2SP signed note (:mod:`marketplace.checkpoint`), which can be exported for a
witness. The final block may be open (unsealed) after a crash; the audit
accepts that.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from marketplace.canonical import JSON, canonical_bytes, canonical_json
from marketplace.checkpoint import Checkpoint, NoteSignature, SignedCheckpoint, key_id, origin_of
from marketplace.entries import (
    GENESIS_PREV,
    Entry,
    SignedTransaction,
    Transaction,
    finish_entry,
    prepare_entry,
)
from marketplace.errors import (
    KeyringError,
    LedgerIntegrityError,
    LedgerNotFoundError,
    ProofError,
    ReadOnlyLedgerError,
    RegistryError,
    SignatureError,
    TransactionError,
)
from marketplace.keyring import Keyring, ledger_key_id
from marketplace.keys import Signer, verify_signature
from marketplace.merkle import MerkleTree, verify_inclusion
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
    "InclusionProof",
    "LedgerSummary",
    "Market",
    "contribution_data",
    "contribution_transaction",
    "ledger_path",
]

_STAGE_ROWS = 4096
"""Staged rows are INSERTed (not yet committed) once this many are pending."""

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
        conn = _connect_readonly(path)
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


_NEEDS_A_WRITER = frozenset({"SQLITE_READONLY_ROLLBACK", "SQLITE_READONLY_RECOVERY"})
"""Read-only opens that fail until a writer recovers the file: a hot rollback journal
(a process killed inside a write transaction) or a WAL index that must be rebuilt."""


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection that also opens the ledger of a killed run.

    A process killed inside a write transaction leaves a hot journal, which SQLite
    lets only a writer roll back; until then every read-only open fails with
    "attempt to write a readonly database". Rolling it back is SQLite's own recovery:
    it restores the last committed state and drops only the transaction that never
    committed, so no committed entry changes. One read-write open does it, then the
    read-only connection is made again. On read-only media recovery is impossible and
    the error stands. Any other error is left to surface where the file is read.
    """
    uri = f"file:{quote(os.fspath(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=60)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorname", "") not in _NEEDS_A_WRITER:
            return conn
        conn.close()
        logger.info("ledger %s: rolling back a transaction a killed writer left open", path)
        writer = sqlite3.connect(path, isolation_level=None, timeout=60)
        try:
            writer.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            writer.close()
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=60)
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
    """The signed checkpoint entry whose root this is; ``None`` for an unsigned tree."""

    def verify(self) -> None:
        """Raise :class:`~marketplace.errors.ProofError` if the proof is invalid."""
        verify_inclusion(
            self.seq,
            self.tree_size,
            bytes.fromhex(self.leaf_hash),
            [bytes.fromhex(p) for p in self.path],
            bytes.fromhex(self.root),
        )


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """What identifies a ledger's current state (recorded in a run's manifest)."""

    ledger_id: str
    """The genesis entry's hash: the id every signature is bound to."""
    size: int
    head: str
    """Hash of the last entry: byte-identical for the same scenario, seed and keyring."""
    root: str
    """RFC 6962 Merkle root of all entries."""
    content_digest: str
    """SHA-256 of the entries' content records: identical under any keyring."""
    treasury_key: str
    """The treasury's (log operator's) public key, hex."""

    def to_json(self) -> dict[str, JSON]:
        return {
            "id": self.ledger_id,
            "size": self.size,
            "head": self.head,
            "root": self.root,
            "content_digest": self.content_digest,
            "treasury_key": self.treasury_key,
        }


class Market:
    """All marketplace economics, as signed and nonce-checked ledger transactions.

    Use :meth:`create` or :meth:`open`; every mutating method appends one (or a
    few) entries and raises a :class:`~marketplace.errors.MarketplaceError`
    subclass when the transaction is refused, in which case nothing is appended.
    Signing needs the :class:`~marketplace.keyring.Keyring` the ledger was
    created with; a market opened without one can read but not append.
    """

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        readonly: bool,
        clock: Callable[[], float] | None,
        keyring: Keyring | None,
    ) -> None:
        self.path = path
        self._conn = conn
        self._readonly = readonly
        self._clock = clock
        self._keyring = keyring
        self._key_id = b""
        self._state = MarketState()
        self._tree = MerkleTree()
        self._content = hashlib.sha256()
        self._head = GENESIS_PREV
        self._seed = 0
        self._block_size: int | None = None
        self._block_start = 0
        self._signers: dict[str, Signer] = {}
        self._pending: list[tuple[int, str, str]] = []
        self._flushed = 0  # leading _pending rows already INSERTed (not yet committed)
        self._in_txn = False
        self._depth = 0
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path,
        *,
        seed: int,
        genesis: Mapping[str, JSON],
        keyring: Keyring,
        run_id: str | None = None,
        clock: Callable[[], float] = lambda: 0.0,
        block_size: int | None = None,
    ) -> Market:
        """Create ``ledger.db`` (``path`` is a run directory or a ``.db`` file) and
        write the genesis entry, which registers the treasury's key.

        ``genesis`` must hold ``scenario_hash``; ``genesis["params"]`` may
        override :class:`~marketplace.state.Params` (unknown names: ValueError).
        ``run_id`` (default: derived from ``genesis`` and ``seed``) is recorded
        in genesis, so two runs of one scenario can have distinct ledger ids.
        Every key is derived from ``keyring``, which must not live in the run
        directory.
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
        keyring.check_outside(db.parent)
        if db.exists():
            raise FileExistsError(f"ledger already exists: {db}")
        data: dict[str, JSON] = dict(genesis)
        if run_id is None:
            digest = hashlib.sha256(canonical_bytes({"genesis": data, "seed": seed}))
            run_id = digest.hexdigest()[:16]
        data.update(seed=seed, params=params.to_json(), block_size=block_size, run_id=run_id)
        db.parent.mkdir(parents=True, exist_ok=True)
        # The schema and the genesis entry are written to a staging file that is
        # linked into place only once complete: a process killed while creating
        # leaves either no ledger or one that verifies, never an empty database
        # that no auditor could open.
        _remove_stale_staging(db)
        staging = db.with_name(f".{db.name}.{os.getpid()}{_STAGING_SUFFIX}")
        _remove_db_files(staging)
        conn = connect(staging, readonly=False)
        market = cls(db, conn, readonly=False, clock=clock, keyring=keyring)
        try:
            conn.executescript(_SCHEMA)
            market._seed = seed
            market._block_size = block_size
            market._key_id = ledger_key_id(data)
            market._append("genesis", TREASURY, data)
            market._commit()
            # Closing the only connection checkpoints the WAL into the file and
            # deletes it, so the staging file alone holds the whole ledger.
            conn.close()
            _publish(staging, db)
        except BaseException:
            market.close()
            _remove_db_files(staging)
            raise
        market._conn = connect(db, readonly=False)
        logger.info("created ledger %s (seed=%d, run %s, keyring %s)", db, seed, run_id, keyring.id)
        return market

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        readonly: bool = True,
        clock: Callable[[], float] | None = None,
        keyring: Keyring | None = None,
    ) -> Market:
        """Open an existing ledger and replay it into memory (no audit; see
        :func:`marketplace.audit.audit_ledger` for a from-scratch verification).

        Appending needs ``keyring``, the one the ledger was created with (a
        KeyringError says so at the first append without one, and at once for
        a keyring that does not hold the treasury's registered key).
        """
        db = ledger_path(path)
        if not db.is_file():
            raise LedgerNotFoundError(f"no ledger at {db}")
        try:
            conn = connect(db, readonly=readonly)
        except sqlite3.Error as exc:
            raise LedgerIntegrityError(0, f"cannot open the ledger database: {exc}") from None
        market = cls(db, conn, readonly=readonly, clock=clock, keyring=keyring)
        try:
            market._catch_up()
            if keyring is not None and market.size:
                market._signer(TREASURY)  # raises if this is not the ledger's keyring
        except sqlite3.Error as exc:
            market.close()
            reason = f"unreadable ledger database: {exc}"
            raise LedgerIntegrityError(market._state.size, reason) from None
        except BaseException:
            market.close()
            raise
        return market

    def close(self) -> None:
        """Commit the staged entries and close the database; a writer leaves it
        out of WAL mode."""
        if self._closed:
            return
        try:
            if self._in_txn:
                self._commit()
        finally:
            self._closed = True
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
    def _signer(self, account: str) -> Signer:
        """The keyring's signer of ``account``, checked against its registered key."""
        signer = self._signers.get(account)
        if signer is not None:
            return signer
        if self._keyring is None:
            raise KeyringError(
                f"{self.path} was opened without a keyring, so nothing can be signed as "
                f"{account!r}: open it with keyring=Keyring.load(...) (the run's keyring)"
            )
        signer = self._keyring.signer(self._key_id, account)
        registered = self._state.accounts.get(account)
        if registered is not None and registered.public_key != signer.public_hex:
            raise KeyringError(
                f"keyring {self._keyring.id} does not hold the key registered for "
                f"{account!r} on {self.path} (it was created with another keyring)"
            )
        self._signers[account] = signer
        return signer

    def _now(self) -> float:
        if self._clock is None:
            return self._state.last_time
        return float(self._clock())

    def _ingest(self, entry: Entry, record: str, content: str) -> None:
        """Apply an already-stored entry (trusted: written by a Market)."""
        state = self._state
        block = state.block
        state.apply(entry.tx)
        if entry.kind == "genesis":
            state.ledger_id = entry.hash
            self._key_id = ledger_key_id(entry.data)
            self._seed = int(entry.data["seed"])  # type: ignore[arg-type]
            bs = entry.data.get("block_size")
            self._block_size = bs if isinstance(bs, int) else None
        if state.block != block:
            self._block_start = entry.seq + 1
        self._tree.append(_sha256(b"\x00" + record.encode("utf-8")).digest())
        self._content.update(content.encode("utf-8") + b"\n")
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
                content = entry.encode().content
            except MALFORMED as exc:
                reason = f"malformed record: {malformed_reason(exc)}"
                raise LedgerIntegrityError(seq, reason) from None
            if entry.seq != seq or entry.prev_hash != self._head:
                raise LedgerIntegrityError(seq, "does not extend the chain; run an audit")
            try:
                self._ingest(entry, record, content)
            except (TransactionError, *MALFORMED) as exc:
                reason = f"invalid transaction: {malformed_reason(exc)}"
                raise LedgerIntegrityError(seq, reason) from None

    def _begin(self) -> None:
        self._writable()
        self._conn.execute("BEGIN IMMEDIATE")
        self._in_txn = True
        try:
            row = self._conn.execute("SELECT seq FROM head WHERE id = 0").fetchone()
            if row is not None and int(row[0]) + 1 != self._state.size:
                self._catch_up()
        except BaseException:
            self._conn.execute("ROLLBACK")
            self._in_txn = False
            raise

    def _commit(self) -> None:
        """Write the staged entries and the head row, and commit."""
        if not self._in_txn:
            return
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
            self._in_txn = False
            self._pending.clear()
            self._flushed = 0

    def _flush_pending(self) -> None:
        """INSERT the staged rows not inserted yet, inside the open transaction
        (at commit, when many are staged, and before reading the database, so
        this connection's reads see every entry appended so far)."""
        rows = self._pending[self._flushed :] if self._flushed else self._pending
        if rows:
            self._conn.executemany("INSERT INTO entries (seq, kind, record) VALUES (?, ?, ?)", rows)
            self._flushed = len(self._pending)

    def _visible(self) -> None:
        if self._in_txn:
            self._flush_pending()

    def _rollback_and_reload(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")
        self._in_txn = False
        self._pending.clear()
        self._flushed = 0
        self._state = MarketState()
        self._tree = MerkleTree()
        self._content = hashlib.sha256()
        self._head = GENESIS_PREV
        self._block_start = 0
        self._catch_up()

    def flush(self) -> None:
        """Commit every staged entry now (without sealing the block)."""
        if self._depth:
            raise RuntimeError("flush() inside batch(): the batch commits when it ends")
        self._commit()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group appends into one SQLite transaction, committed when the ``with``
        block exits (also when a refused transaction ends it: refusals undo
        nothing before them). An I/O error rolls the batch back and reloads."""
        self._writable()
        self._depth += 1
        try:
            yield
        except sqlite3.Error:
            self._depth = 0
            self._rollback_and_reload()
            raise
        except BaseException:
            self._depth -= 1
            if not self._depth:
                self._commit()
            raise
        self._depth -= 1
        if not self._depth:
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
        """Validate, sign (or check the outside signature), hash-chain and stage one entry."""
        if not self._in_txn:
            self._begin()
        state = self._state
        if signed is None:
            signer = self._signer(sender)
            when = self._now() if time is None else time
            key = signer.public_hex if kind in ("genesis", "register") else None
            tx = Transaction(
                kind, sender, state.next_nonce(sender), when, dict(data), state.ledger_id, key
            )
            # canonical_json fails early on NaN / unencodable data
            prepared = prepare_entry(tx, canonical_json(tx.data))
            signature = signer.sign(prepared.signing).hex()
        else:
            tx, signature = signed.tx, signed.signature
            data_json = canonical_json(tx.data)
            # Never trusted: bound to this ledger, and verified against the key
            # registered on the ledger, before anything is applied.
            state.check_ledger(tx)
            public = state.public_key_for(tx)
            prepared = prepare_entry(tx, data_json)
            if not verify_signature(public, signature, prepared.signing):
                raise SignatureError(
                    "signature does not verify", account=tx.sender, tx=tx.describe()
                )
        seq, block, prev = state.size, state.block, self._head
        state.apply(tx)  # validates (ledger, account, nonce, funds, ...) before mutating
        enc = finish_entry(prepared, seq, block, signature, prev)
        if kind == "genesis":
            state.ledger_id = enc.hash
        record = enc.record
        self._tree.append(_sha256(b"\x00" + record.encode("utf-8")).digest())
        self._content.update((enc.content + "\n").encode("utf-8"))
        self._head = enc.hash
        self._pending.append((seq, tx.kind, record))
        if len(self._pending) - self._flushed >= _STAGE_ROWS:
            self._flush_pending()
        entry = Entry(
            seq,
            block,
            tx.kind,
            tx.sender,
            tx.nonce,
            tx.time,
            tx.data,
            tx.ledger,
            tx.key,
            signature,
            prev,
            enc.hash,
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
        """The scenario seed recorded in genesis (no key depends on it)."""
        return self._seed

    @property
    def ledger_id(self) -> str:
        """This ledger's id: the genesis entry's hash, which every signature is bound to."""
        lid = self._state.ledger_id
        if lid is None:
            raise LedgerIntegrityError(0, "ledger has no genesis entry")
        return lid

    @property
    def key_id(self) -> str:
        """The id (hex) account keys on this ledger are derived under
        (:func:`~marketplace.keyring.ledger_key_id` of genesis): what a node needs,
        with its own keyring, to derive its account's key here. Public."""
        return self._key_id.hex()

    @property
    def content_digest(self) -> str:
        """SHA-256 of the entries' content records, one per line (identical for the
        same scenario and seed under any keyring; see :mod:`marketplace.entries`)."""
        return self._content.hexdigest()

    @property
    def state(self) -> MarketState:
        """The derived market state (read it, do not mutate it)."""
        return self._state

    @property
    def params(self) -> Params:
        """Market parameters fixed at genesis."""
        return self._state.params

    def summary(self) -> LedgerSummary:
        """Id, size, head, root, content digest and treasury key, as of now."""
        return LedgerSummary(
            self.ledger_id,
            self.size,
            self._head,
            self.root(),
            self.content_digest,
            self.public_key(TREASURY),
        )

    def public_key(self, account: str) -> str:
        """The registered public key of ``account`` (hex; else the keyring's)."""
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
        signer: Signer | None = None,
    ) -> SignedTransaction:
        """Build and sign a transaction as ``sender`` would (for :meth:`submit`),
        bound to this ledger; ``signer`` overrides the keyring's key (tests)."""
        signer = self._signer(sender) if signer is None else signer
        tx = Transaction(
            kind,
            sender,
            self._state.next_nonce(sender) if nonce is None else nonce,
            self._now() if time is None else time,
            dict(data),
            self._state.ledger_id,
            signer.public_hex if kind == "register" else None,
        )
        return SignedTransaction(tx, signer.sign(tx.signing_bytes()).hex())

    def submit(self, signed: SignedTransaction) -> Entry:
        """Append an externally signed transaction after checking its ledger id,
        account, signature and nonce (in that order)."""
        self._writable()
        return self._append(signed.tx.kind, signed.tx.sender, signed.tx.data, signed=signed)

    # -- accounts and tokens -----------------------------------------------------
    def register_participant(
        self, account: str, *, role: str, meta: Mapping[str, JSON] | None = None
    ) -> Entry:
        """Register ``account``: its first entry, self-signed (nonce 0), carrying the
        keyring's public key for it. Called when the account first takes part, so
        nothing at start-up grows with the population."""
        data: dict[str, JSON] = {"role": role, "meta": dict(meta or {})}
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
        privacy: Mapping[str, JSON] | None = None,
        signature: str | None = None,
    ) -> Entry:
        """The client signs its update's hash, size, privacy cost and local metrics.

        ``privacy`` is the mechanism behind ``epsilon`` (σ, q, this round's steps,
        δ, accountant; see :mod:`marketplace.privacy_audit`), so an auditor can
        re-derive the cumulative ε; it is left out of non-DP entries.

        ``signature`` is the client's own signature (hex) of this entry's
        transaction (:func:`contribution_transaction` with the client's next
        nonce, the ledger's clock and id), made where the client runs (a deployed
        SuperNode). It is verified like :meth:`submit`'s, against the client's
        registered key; without it the keyring signs as the client."""
        data = contribution_data(
            round=round,
            update_hash=update_hash,
            num_examples=num_examples,
            epsilon=epsilon,
            metrics=metrics,
            privacy=privacy,
        )
        if signature is None:
            return self._append("contribution", client, data)
        tx = contribution_transaction(
            client=client,
            nonce=self._state.next_nonce(client),
            time=self._now(),
            ledger=self.ledger_id,
            data=data,
        )
        try:
            return self.submit(SignedTransaction(tx, signature))
        except SignatureError:
            raise SignatureError(
                f"signature does not verify under {client}'s registered key for this "
                f"ledger's contribution (nonce {tx.nonce}, time {tx.time!r}): signed with "
                "another key, or for another ledger id, nonce, time or data",
                account=client,
                tx=tx.describe(),
            ) from None

    def reject_contribution(
        self,
        *,
        round: int,
        client: str,
        reason: str,
        epsilon: float | None = None,
        privacy: Mapping[str, JSON] | None = None,
    ) -> Entry:
        """The platform records that it refused ``client``'s update; in a DP run
        also what the client's training cost (it trained on its data either way),
        so the audit's per-identity composition has every step."""
        data: dict[str, JSON] = {"round": round, "client": client, "reason": reason}
        if privacy is not None:
            data["epsilon"] = epsilon
            data["privacy"] = dict(privacy)
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

    def distribute_revenue(
        self, version: str, payouts: Mapping[str, int] | None = None
    ) -> list[Entry]:
        """Pay out the version's revenue pool: the platform fee to the treasury,
        the rest to contributors by recorded share (largest remainder).

        ``payouts`` (base units per account, at most the pool in all) is a split a
        mechanism decided instead (``RoyaltiesMechanism``, fee line included); what
        it leaves to nobody goes to the treasury like the fee."""
        self.version(version)
        pool = self._state.balance(pool_account(version))
        split = self.revenue_split(version) if payouts is None else payouts
        if any(x < 0 for x in split.values()) or sum(split.values()) > pool:
            raise ValueError(f"payouts of {version} must be >= 0 and sum to at most {pool}")
        paid = {a: x for a, x in split.items() if x > 0}
        rest = pool - sum(paid.values())
        if rest:
            paid[TREASURY] = paid.get(TREASURY, 0) + rest
        out: list[Entry] = []
        with self.batch():
            for account in sorted(paid):
                data: dict[str, JSON] = {
                    "version": version,
                    "to": account,
                    "amount": paid[account],
                    "fee": account == TREASURY,
                }
                out.append(self._append("revenue_payout", TREASURY, data))
        return out

    def revenue_split(self, version: str) -> dict[str, int]:
        """The default split of ``version``'s pool: the platform fee
        (``params.platform_fee_bps``, rounded down) to the treasury, the rest by the
        recorded contributor shares (largest remainder)."""
        mv = self.version(version)
        pool = self._state.balance(pool_account(version))
        fee = pool * self.params.platform_fee_bps // 10_000
        return {a: x for a, x in largest_remainder(pool - fee, mv.contributors).items() if x > 0}

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
        """Seal the current block with a treasury-signed checkpoint (no-op if empty),
        commit it and checkpoint the WAL into ``ledger.db``."""
        self._seal(None)

    def _seal(self, time: float | None) -> None:
        if self._state.size == self._block_start:
            return
        treasury = self._signer(TREASURY)
        size = self._state.size
        root = self._tree.root()
        note = Checkpoint(origin_of(self.ledger_id), size, root)
        data: dict[str, JSON] = {
            "block": self._state.block,
            "tree_size": size,
            "root": root.hex(),
            "note_signature": treasury.sign(note.body().encode("utf-8")).hex(),
        }
        self._append("checkpoint", TREASURY, data, time=time)
        if not self._depth:
            self._commit()
            self._checkpoint_wal()

    def _checkpoint_wal(self) -> None:
        """Copy the WAL into ``ledger.db`` (never waiting for readers), so the file
        alone holds every sealed block even if the ``-wal`` file is lost."""
        row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if row is not None and row[1] != row[2]:
            logger.debug("WAL checkpoint incomplete (%s of %s frames): readers", row[2], row[1])

    def root(self, size: int | None = None) -> str:
        """Merkle root (hex) of the first ``size`` entries."""
        return self._tree.root(size).hex()

    def checkpoints(self) -> list[Entry]:
        """Every checkpoint entry, oldest first (the ``kind`` column only finds them:
        each record must say so itself)."""
        self._visible()
        rows = self._conn.execute(
            "SELECT seq, record FROM entries WHERE kind = 'checkpoint' ORDER BY seq"
        ).fetchall()
        return [read_entry(seq, record, "checkpoint") for seq, record in rows]

    def signed_checkpoint(self, entry: Entry | None = None) -> SignedCheckpoint:
        """The signed note of checkpoint ``entry`` (default: the latest), verified
        under the treasury's registered key; ProofError if it does not verify."""
        if entry is None:
            found = self.checkpoints()
            if not found:
                raise ProofError(f"{self.path}: no sealed block, so no signed checkpoint yet")
            entry = found[-1]
        return checkpoint_note(entry, self.ledger_id, bytes.fromhex(self.public_key(TREASURY)))

    def inclusion_proof(self, seq: int, *, tree_size: int | None = None) -> InclusionProof:
        """O(log n) proof that entry ``seq`` is in the tree of ``tree_size`` entries.

        By default the tree is the one signed by the latest checkpoint (which
        must cover the entry, and whose signature is checked); with
        ``tree_size``, the current tree of that size (unsigned).
        """
        if not 0 <= seq < self.size:
            raise IndexError(f"no entry #{seq} (ledger has {self.size})")
        checkpoint: int | None = None
        if tree_size is None:
            cps = self.checkpoints()
            if not cps or int(cps[-1].data["tree_size"]) <= seq:  # type: ignore[arg-type]
                raise ProofError(
                    f"entry #{seq} is in the open block: no signed checkpoint covers it"
                )
            note = self.signed_checkpoint(cps[-1])
            checkpoint, tree_size = cps[-1].seq, note.checkpoint.tree_size
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
        self._visible()
        end = self.size if stop is None else stop
        rows = self._conn.execute(
            "SELECT seq, record FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq",
            (start, end),
        ).fetchall()
        return [read_entry(seq, record, None) for seq, record in rows]

    def entry(self, seq: int) -> Entry:
        """One entry by sequence number."""
        found = self.entries(seq, seq + 1)
        if not found:
            raise IndexError(f"no entry #{seq} (ledger has {self.size})")
        return found[0]


def contribution_data(
    *,
    round: int,
    update_hash: str,
    num_examples: int,
    epsilon: float | None,
    metrics: Mapping[str, float],
    privacy: Mapping[str, JSON] | None = None,
) -> dict[str, JSON]:
    """The data of a ``contribution`` entry (one layout for the ledger and for a
    client that signs its own, :func:`contribution_transaction`)."""
    data: dict[str, JSON] = {
        "round": round,
        "update_hash": update_hash,
        "num_examples": num_examples,
        "epsilon": epsilon,
        "metrics": dict(metrics),
    }
    if privacy is not None:
        data["privacy"] = dict(privacy)
    return data


def contribution_transaction(
    *, client: str, nonce: int, time: float, ledger: str, data: Mapping[str, JSON]
) -> Transaction:
    """The transaction ``client`` signs for its contribution entry on ``ledger``:
    bound to the ledger id, its nonce and the ledger's clock, with
    :func:`contribution_data` as ``data``. A node that signs it off the ledger's
    host gets ``nonce``, ``time`` and ``ledger`` in its task."""
    return Transaction("contribution", client, nonce, time, dict(data), ledger)


def read_entry(seq: int, record: str, kind: str | None) -> Entry:
    """Parse a row, checking the columns it was selected by against the record."""
    try:
        entry = Entry.from_record(record)
    except MALFORMED as exc:
        raise LedgerIntegrityError(seq, f"malformed record: {malformed_reason(exc)}") from None
    if entry.seq != seq:
        raise LedgerIntegrityError(seq, f"row #{seq} holds the record of entry #{entry.seq}")
    if kind is not None and entry.kind != kind:
        raise LedgerIntegrityError(
            seq, f"kind column says {kind!r} but the record is a {entry.kind!r} entry"
        )
    return entry


def checkpoint_note(entry: Entry, ledger_id: str, treasury_key: bytes) -> SignedCheckpoint:
    """The signed note a checkpoint entry holds, verified under ``treasury_key``."""
    data = entry.data
    try:
        size, root, sig = data["tree_size"], data["root"], data["note_signature"]
        note = Checkpoint(origin_of(ledger_id), int(size), bytes.fromhex(str(root)))  # type: ignore[arg-type]
        blob = NoteSignature(
            note.origin, key_id(note.origin, treasury_key), bytes.fromhex(str(sig))
        )
        signed = SignedCheckpoint(note, (blob,))
    except (KeyError, TypeError, ValueError):
        raise ProofError(f"checkpoint entry #{entry.seq} is malformed") from None
    signed.verify(note.origin, treasury_key)
    return signed
