"""The attacker holds everything in the run directory, but not the keyring.

Acceptance (a)-(e) of the ledger-trust issue, through the CLI (exit code and
message), plus replays and the ``kind`` column. Each forger is careful: it
re-chains every later hash, recomputes every checkpoint root and fixes the
``head`` row, as a real one would.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marketplace import (
    TOKEN,
    Keyring,
    LedgerIdError,
    LedgerIntegrityError,
    Market,
    NonceError,
    audit_ledger,
)
from marketplace.checkpoint import Checkpoint, SignedCheckpoint, origin_of, parse_verifier_key
from marketplace.entries import GENESIS_PREV, Entry
from marketplace.keys import Signer
from marketplace.merkle import MerkleTree, leaf_hash
from simulation.cli.main import app
from tests.fixtures.references.dp_vectors import DP_EPSILON, mechanism
from tests.keyring import KEYRING
from tests.marketplace.conftest import populate

runner = CliRunner()
FOREIGN = Keyring(hashlib.sha256(b"the attacker's own keyring").digest())


def seed_key(seed: int, account: str) -> Signer:
    """The key the pre-keyring ledger derived from the scenario seed, which genesis
    records: the only key an attacker could derive from the run directory."""
    material = b"fedmarket-key\x00" + str(seed).encode() + b"\x00" + account.encode()
    return Signer(hashlib.sha256(material).digest())


def _build(run: Path, keyring: Keyring = KEYRING, num_examples: int = 10) -> Path:
    m = Market.create(run, keyring=keyring, seed=11, genesis={"scenario_hash": "forge"})
    populate(m)
    m.record_contribution(
        round=2,
        client="client-001",
        update_hash="ab" * 32,
        num_examples=num_examples,
        epsilon=DP_EPSILON,  # no steps this round: ε stays what round 1 cost
        metrics={},
        privacy=mechanism(0),
    )
    m.end_block()
    m.close()
    return run


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return _build(tmp_path / "run")


def _cli(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def _rows(run: Path) -> list[Entry]:
    conn = sqlite3.connect(run / "ledger.db")
    rows = conn.execute("SELECT record FROM entries ORDER BY seq").fetchall()
    conn.close()
    return [Entry.from_record(r) for (r,) in rows]


def _contribution(run: Path, client: str = "client-001") -> Entry:
    return next(e for e in _rows(run) if e.kind == "contribution" and e.sender == client)


def _forge(
    run: Path,
    edit: Callable[[Entry], Entry],
    resign: Callable[[Entry], Signer | None],
    stop: int | None = None,
) -> None:
    """Rewrite the ledger file: ``edit`` each entry, re-sign it with ``resign(entry)``
    (``None``: keep its signature), recompute checkpoint roots (their notes re-signed
    with the treasury key ``resign`` gives), re-chain, fix the head row."""
    entries = _rows(run)[:stop]
    tree, prev, ledger_id = MerkleTree(), GENESIS_PREV, entries[0].hash
    conn = sqlite3.connect(run / "ledger.db", isolation_level=None)
    conn.execute("DELETE FROM entries")
    for e in entries:
        e = edit(e)._replace(prev_hash=prev)
        signer = resign(e)
        if e.kind == "checkpoint":
            root = tree.root(e.seq)
            data = {**e.data, "root": root.hex()}
            if signer is not None:
                body = Checkpoint(origin_of(ledger_id), e.seq, root).body().encode()
                data["note_signature"] = signer.sign(body).hex()
            e = e._replace(data=data)
        if signer is not None:
            e = e._replace(signature=signer.sign(e.tx.signing_bytes()).hex())
        e = e._replace(hash=Entry.compute_hash(prev, e.body()))
        conn.execute("INSERT INTO entries VALUES (?, ?, ?)", (e.seq, e.kind, e.record()))
        tree.append(leaf_hash(e.record().encode()))
        prev = e.hash
    conn.execute("UPDATE head SET seq = ?, hash = ?", (len(entries) - 1, prev))
    conn.close()


def _lower_epsilon(target: Entry) -> Callable[[Entry], Entry]:
    def edit(e: Entry) -> Entry:
        return e._replace(data={**e.data, "epsilon": 0.1}) if e.seq == target.seq else e

    return edit


# -- (a) edit a contribution's epsilon ------------------------------------------------


def test_a_epsilon_edit_resigned_with_derivable_keys_fails_naming_the_entry(run: Path) -> None:
    target = _contribution(run)

    def resign(e: Entry) -> Signer | None:
        later_checkpoint = e.kind == "checkpoint" and e.seq > target.seq
        return seed_key(11, e.sender) if e.seq == target.seq or later_checkpoint else None

    _forge(run, _lower_epsilon(target), resign)
    code, out = _cli("ledger", "verify", run)
    assert code == 3
    assert f"entry #{target.seq}" in out and "bad signature by client-001" in out


def test_a_epsilon_edit_with_a_swapped_client_key_fails_at_the_checkpoint(run: Path) -> None:
    """Swapping the client's registered key for the forger's own passes the client's
    entries, but every checkpoint over them is the treasury's, whose key is not derivable."""
    target = _contribution(run)
    own = FOREIGN.signer(b"k" * 32, "client-001")

    def edit(e: Entry) -> Entry:
        if e.kind == "register" and e.sender == "client-001":
            return e._replace(key=own.public_hex)
        return _lower_epsilon(target)(e)

    def resign(e: Entry) -> Signer | None:
        if e.sender == "client-001":
            return own
        return seed_key(11, "treasury") if e.kind == "checkpoint" else None

    _forge(run, edit, resign)
    first_checkpoint = next(e for e in _rows(run) if e.kind == "checkpoint")
    code, out = _cli("ledger", "verify", run)
    assert code == 3
    assert f"entry #{first_checkpoint.seq}: bad signature" in out


def test_a_whole_history_rewritten_with_another_keyring_fails_against_a_witness(
    run: Path, tmp_path: Path
) -> None:
    """With a keyring of their own a forger can write a whole new, self-consistent
    ledger (the threat model's stated limit): only a checkpoint held elsewhere, or
    an expected head, tells it from the original."""
    code, note = _cli("ledger", "checkpoint", run)
    assert code == 0
    witness = tmp_path / "checkpoint.txt"
    witness.write_text(note)
    head = audit_ledger(run).head_hash
    forged = _build(tmp_path / "forged", FOREIGN, num_examples=11)
    shutil.copy(forged / "ledger.db", run / "ledger.db")
    assert _cli("ledger", "verify", run)[0] == 0  # the file alone is consistent
    code, out = _cli("ledger", "verify", run, "--checkpoint", witness)
    assert code == 3 and "the checkpoint is for fedmarket.ledger/" in out
    code, out = _cli("ledger", "verify", run, "--expect-head", head)
    assert code == 3 and "is not in this ledger" in out


# -- (b) append without the keyring ------------------------------------------------------


def test_b_appending_without_the_keyring_is_refused(run: Path, tmp_path: Path) -> None:
    size = audit_ledger(run).entries
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "hf"
    args = (
        "registry",
        "import-hf",
        run,
        "fedmarket-fixtures/tiny-gpt2",
        "--offline-fixtures",
        fixtures,
    )
    code, out = _cli(*args, "--keyring", tmp_path / "none")
    assert code == 1 and "no keyring file" in out
    other = tmp_path / "other.keyring"
    Keyring.create(other)
    code, out = _cli(*args, "--keyring", other)
    assert code == 1 and "does not hold the key registered for 'treasury'" in out
    assert audit_ledger(run).entries == size


# -- (c) replays -------------------------------------------------------------------------


def _pair(tmp_path: Path) -> tuple[Market, Market]:
    """Two ledgers of one scenario and keyring that differ only in their run id."""
    out = []
    for run_id in ("run-a", "run-b"):
        m = Market.create(
            tmp_path / run_id,
            keyring=KEYRING,
            run_id=run_id,
            seed=11,
            genesis={"scenario_hash": "same"},
        )
        populate(m)
        out.append(m)
    return out[0], out[1]


def test_c_transaction_replayed_from_another_ledger_is_refused(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    signed = b.sign("transfer", "client-001", {"to": "client-000", "amount": TOKEN, "memo": ""})
    assert signed.tx.nonce == a.state.next_nonce("client-001")  # same nonce, same sender
    with pytest.raises(LedgerIdError, match="ledger-id mismatch"):
        a.submit(signed)
    b.submit(signed)
    with pytest.raises(NonceError, match="nonce reused"):
        b.submit(signed)
    a.close()
    b.close()


def test_c_entry_replayed_into_another_ledger_file_fails_verify(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    foreign = b.transfer("client-001", "client-000", TOKEN)
    a.close()
    b.close()
    entries = _rows(tmp_path / "run-a")
    at, head = len(entries), entries[-1].hash
    copied = foreign._replace(seq=at, block=entries[-1].block + 1, prev_hash=head)
    copied = copied._replace(hash=Entry.compute_hash(head, copied.body()))
    conn = sqlite3.connect(tmp_path / "run-a" / "ledger.db", isolation_level=None)
    conn.execute("INSERT INTO entries VALUES (?, ?, ?)", (at, copied.kind, copied.record()))
    conn.execute("UPDATE head SET seq = ?, hash = ?", (at, copied.hash))
    conn.close()
    code, out = _cli("ledger", "verify", tmp_path / "run-a")
    assert code == 3 and f"entry #{at}" in out and "ledger-id mismatch" in out


def test_c_entry_replayed_twice_in_one_ledger_fails_verify(run: Path) -> None:
    target = _contribution(run)
    entries = _rows(run)
    conn = sqlite3.connect(run / "ledger.db", isolation_level=None)
    at = len(entries)
    copied = target._replace(seq=at, block=entries[-1].block + 1, prev_hash=entries[-1].hash)
    copied = copied._replace(hash=Entry.compute_hash(copied.prev_hash, copied.body()))
    conn.execute("INSERT INTO entries VALUES (?, ?, ?)", (at, copied.kind, copied.record()))
    conn.execute("UPDATE head SET seq = ?, hash = ?", (at, copied.hash))
    conn.close()
    code, out = _cli("ledger", "verify", run)
    assert code == 3 and f"entry #{at}" in out and "nonce reused" in out


# -- (d) truncation after a checkpoint was exported -------------------------------------


def test_d_truncation_after_export_fails_verify_checkpoint(run: Path, tmp_path: Path) -> None:
    witness = tmp_path / "checkpoint.txt"
    code, out = _cli("ledger", "checkpoint", run, "--out", witness)
    assert code == 0 and "wrote" in out
    code, vkey = _cli("ledger", "checkpoint", run, "--verifier-key")
    name, public = parse_verifier_key(vkey)  # what a witness pins
    SignedCheckpoint.parse(witness.read_text()).verify(name, public)
    size = audit_ledger(run).entries
    _forge(run, lambda e: e, lambda e: None, stop=size - 3)  # drop the tail, fix the head
    assert _cli("ledger", "verify", run)[0] == 0  # a shorter ledger that verifies
    code, out = _cli("ledger", "verify", run, "--checkpoint", witness)
    assert code == 3 and f"ledger truncated: the checkpoint covers {size - 1} entries" in out


def test_d_lost_wal_keeps_every_sealed_block(tmp_path: Path) -> None:
    """While a run is open its newest entries may sit in the -wal file only: each
    sealed block is checkpointed into ledger.db, so a copy of ledger.db alone holds
    every sealed block, and a witness of the later head catches the loss."""
    m = Market.create(tmp_path / "run", keyring=KEYRING, seed=1, genesis={"scenario_hash": "w"})
    populate(m)
    sealed = m.size
    witness = tmp_path / "checkpoint.txt"
    witness.write_text(m.signed_checkpoint().text())
    m.transfer("client-000", "client-001", 1)
    m.flush()  # committed, but in the WAL only until the next sealed block
    later = m.head_hash
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "run" / "ledger.db", copy / "ledger.db")  # without -wal
    m.close()
    assert audit_ledger(copy).entries == sealed
    assert _cli("ledger", "verify", copy, "--checkpoint", witness)[0] == 0
    code, out = _cli("ledger", "verify", copy, "--expect-head", later)
    assert code == 3 and "is not in this ledger" in out
    code, out = _cli("ledger", "verify", tmp_path / "run", "--expect-head", later)
    assert code == 0 and f"expected head: entry #{sealed}" in out


# -- (e) prove a tampered entry ----------------------------------------------------------


def test_e_prove_fails_on_a_tampered_entry(run: Path) -> None:
    target = _contribution(run)
    assert _cli("ledger", "prove", run, str(target.seq))[0] == 0
    conn = sqlite3.connect(run / "ledger.db", isolation_level=None)
    edited = target._replace(data={**target.data, "epsilon": 0.1})
    conn.execute("UPDATE entries SET record = ? WHERE seq = ?", (edited.record(), target.seq))
    conn.close()
    code, out = _cli("ledger", "prove", run, str(target.seq))
    assert code == 3 and f"entry #{target.seq} is not what the checkpoint" in out


def test_e_prove_fails_when_the_checkpoint_root_is_recomputed(run: Path) -> None:
    target = _contribution(run)
    _forge(run, _lower_epsilon(target), lambda e: None)  # roots recomputed, not re-signed
    code, out = _cli("ledger", "prove", run, str(target.seq))
    assert code == 3 and "not signed by the treasury's key" in out


def test_e_prove_and_verify_check_the_kind_column(run: Path) -> None:
    """The issue's example: a contribution row whose kind column says checkpoint."""
    m = Market.open(run, readonly=False, keyring=KEYRING)
    late = m.record_contribution(
        round=3, client="client-002", update_hash="cd" * 32, num_examples=1, epsilon=2.0, metrics={}
    )
    m.close()
    conn = sqlite3.connect(run / "ledger.db", isolation_level=None)
    conn.execute("UPDATE entries SET kind = 'checkpoint' WHERE seq = ?", (late.seq,))
    conn.close()
    for command in (("verify", run), ("prove", run, "3")):
        code, out = _cli("ledger", *command)
        assert code == 3, command
        assert f"entry #{late.seq}: kind column says 'checkpoint'" in out, command


def test_per_kind_audit_hooks_fail_the_entry_they_reject(run: Path) -> None:
    """The hook [privacy] uses to re-derive epsilon: a claim it rejects fails the
    audit at that entry."""
    target = _contribution(run)
    seen: list[int] = []

    def at_most_one(entry: Entry, state: object) -> None:
        seen.append(entry.seq)
        eps = entry.data["epsilon"]
        if isinstance(eps, float) and eps > 1.0 and entry.seq == target.seq:
            raise ValueError(f"epsilon {eps} is not what its mechanism gives")

    with pytest.raises(LedgerIntegrityError) as err:
        audit_ledger(run, checks={"contribution": [at_most_one]})
    assert err.value.seq == target.seq and "not what its mechanism gives" in err.value.reason
    contributions = [e.seq for e in _rows(run) if e.kind == "contribution"]
    assert seen == [s for s in contributions if s <= target.seq]  # its kind only, in order
